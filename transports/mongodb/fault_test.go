package mongodb_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
)

// The server restarts under a producer publishing with confirms and a
// consumer consuming (Consume, prefetch 10, acking each): stopped with
// SIGTERM (a clean shutdown, which FerretDB takes about 3 s over, serving
// its open connections meanwhile) or SIGKILL (a crash), left down for a
// second and started again on the same port and the same SQLite files. Every publish that
// was confirmed is consumed (lost = 0); a publish whose answer the stop
// cut off may have gone in or not (recovered when it did), and a
// message whose ack or take the stop cut off comes back when its lease
// runs out (a duplicate). A backlog published before the stop and
// consumed after the restart is all there. Each case logs its fault-table row.
func TestServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and restarts FerretDB")
	}
	for _, c := range []struct {
		name string
		sig  os.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}} {
		t.Run(c.name, func(t *testing.T) { restartUnderLoad(t, c.name, c.sig) })
	}
}

func restartUnderLoad(t *testing.T, signame string, sig os.Signal) {
	f, err := mongotest.Start(context.Background())
	if err != nil {
		brokertest.Unavailable(t, "FerretDB: "+err.Error())
	}
	t.Cleanup(f.Stop)
	s := &server{addr: f.Addr}
	pub, con := s.open(t, "restart", ""), s.open(t, "restart", "")
	defer pub.Close()
	defer con.Close()
	q := uniq("restart-")
	if _, err := pub.DeclareQueue(context.Background(), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	sub, err := con.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Cancel(context.Background()) }()

	const down = time.Second
	var (
		mu        sync.Mutex
		startedAt = map[int]time.Time{} // publish start, by message number
		confirmed = map[int]bool{}
		consumed  = map[int]int{} // deliveries per message
		restarted time.Time       // when the server listened again
		recovery  time.Duration   // restarted -> first message published after it consumed
	)
	// Consumer: counts and acks every delivery.
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			n, err := strconv.Atoi(string(d.Body))
			if err != nil {
				t.Errorf("foreign body %q", d.Body)
				continue
			}
			mu.Lock()
			consumed[n]++
			if !restarted.IsZero() && recovery == 0 && !startedAt[n].Before(restarted) {
				recovery = time.Since(restarted)
			}
			mu.Unlock()
			_ = d.Acknowledger.Ack(d.Tag, false)
		}
	}()
	// Producer: publishes with confirms, one every 10 ms, for 4 seconds.
	stopPub := make(chan struct{})
	pubDone := make(chan int)
	go func() {
		sent := 0
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				pubDone <- sent
				return
			default:
			}
			mu.Lock()
			startedAt[i] = time.Now()
			mu.Unlock()
			cx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := pub.Publish(cx, &transport.Publishing{RoutingKey: q, Body: []byte(strconv.Itoa(i)), Confirm: true})
			cancel()
			sent++
			if err == nil {
				mu.Lock()
				confirmed[i] = true
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// A backlog no one consumes before the restart: it must be there after
	// it, read from the files the stopped server left.
	backlog := q + "-backlog"
	const backlogN = 50
	for i := range backlogN {
		if err := pub.Publish(context.Background(), &transport.Publishing{RoutingKey: backlog, Body: []byte(strconv.Itoa(i)), Confirm: true}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	sentBefore := len(startedAt)
	mu.Unlock()
	stopped := time.Now()
	if err := f.Signal(sig); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()
	mu.Lock()
	sentShutdown := len(startedAt) - sentBefore
	mu.Unlock()
	time.Sleep(down)
	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	restarted = time.Now()
	sentDown := len(startedAt) - sentBefore - sentShutdown
	mu.Unlock()
	time.Sleep(2500 * time.Millisecond)
	close(stopPub)
	sent := <-pubDone
	t.Logf("publishes begun: %d in the 1.5 s before the signal, %d until the server exited (%v), %d while it was down (%v, the restart included), %d in the 2.5 s after",
		sentBefore, sentShutdown, exited.Sub(stopped).Round(time.Millisecond), sentDown, restarted.Sub(exited).Round(time.Millisecond), sent-sentBefore-sentShutdown-sentDown)

	// Every confirmed message must come: within the lease (3 s) of a lost
	// ack or take, and the consumer's back-off, at most.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for n := range confirmed {
			if consumed[n] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let duplicates (a lease running out) show up before counting them.
	time.Sleep(4 * time.Second)
	_ = sub.Cancel(context.Background())
	<-consumerDone

	got := map[string]bool{}
	for len(got) < backlogN {
		d := getWithin(t, con, backlog, 10*time.Second)
		got[string(d.Body)] = true
		_ = d.Acknowledger.Ack(d.Tag, false)
	}

	mu.Lock()
	defer mu.Unlock()
	var lost, duplicated, recovered int
	for n := range sent {
		switch {
		case confirmed[n] && consumed[n] == 0:
			lost++
			t.Errorf("message %d was confirmed and never consumed", n)
		case !confirmed[n] && consumed[n] > 0:
			recovered++
		}
		if consumed[n] > 1 {
			duplicated += consumed[n] - 1
		}
	}
	if len(confirmed) == sent {
		t.Logf("no publish failed while the server was down")
	}
	if recovery == 0 {
		t.Errorf("no message published after the restart was consumed (sub err %v)", sub.Err())
	}
	verdict := "pass"
	if lost > 0 || recovery == 0 {
		verdict = "fail"
	}
	t.Logf("FAULT ROW | FerretDB (SQLite) child process stopped with %s mid-stream (exited %v after it), down %v, restarted on the same port and files | mongodb | %d | %d | %d | %d | %d | %v | %s",
		signame, exited.Sub(stopped).Round(100*time.Millisecond), restarted.Sub(exited).Round(100*time.Millisecond), sent, len(confirmed), lost, duplicated, recovered, recovery.Round(time.Millisecond), verdict)
}
