package mongodb_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
	l := brokertest.NewLedger() // by body, the message number
	// Consumer: counts and acks every delivery.
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			if _, err := strconv.Atoi(string(d.Body)); err != nil {
				t.Errorf("foreign body %q", d.Body)
				continue
			}
			l.Consumed(string(d.Body))
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
			id := strconv.Itoa(i)
			l.Sent(id)
			cx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := pub.Publish(cx, &transport.Publishing{RoutingKey: q, Body: []byte(id), Confirm: true})
			cancel()
			sent++
			if err == nil {
				l.Confirmed(id)
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
	sentBefore := l.Tally().Sent
	stopped := time.Now()
	if err := f.Signal(sig); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()
	sentShutdown := l.Tally().Sent - sentBefore
	time.Sleep(down)
	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now() // the server listens again
	sentDown := l.Tally().Sent - sentBefore - sentShutdown
	time.Sleep(2500 * time.Millisecond)
	close(stopPub)
	sent := <-pubDone
	t.Logf("publishes begun: %d in the 1.5 s before the signal, %d until the server exited (%v), %d while it was down (%v, the restart included), %d in the 2.5 s after",
		sentBefore, sentShutdown, exited.Sub(stopped).Round(time.Millisecond), sentDown, restarted.Sub(exited).Round(time.Millisecond), sent-sentBefore-sentShutdown-sentDown)

	// Every confirmed message must come: within the lease (3 s) of a lost
	// ack or take, and the consumer's back-off, at most.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	l.WaitConsumed(wctx)
	wcancel()
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

	tl := l.Tally()
	for _, n := range tl.LostIDs {
		t.Errorf("message %s was confirmed and never consumed", n)
	}
	if tl.Confirmed == sent {
		t.Logf("no publish failed while the server was down")
	}
	// Time to recover: restarted -> the first message published after it
	// consumed.
	var recovery time.Duration
	if first, ok := l.FirstConsumedSentAfter(restarted); ok {
		recovery = first.Sub(restarted)
	}
	if recovery == 0 {
		t.Errorf("no message published after the restart was consumed (sub err %v)", sub.Err())
	}
	tl.LogRow(t, fmt.Sprintf("FerretDB (SQLite) child process stopped with %s mid-stream (exited %v after it), down %v, restarted on the same port and files",
		signame, exited.Sub(stopped).Round(100*time.Millisecond), restarted.Sub(exited).Round(100*time.Millisecond)),
		"mongodb", recovery.Round(time.Millisecond).String(), tl.Lost == 0 && recovery != 0)
}
