package sqldb_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// childEnv makes the test binary a consumer that takes one message from
// the URL and queue named in it, says so, and hangs in its "handler" until
// it is killed.
const childEnv = "KOMBU_SQLDB_TEST_CONSUMER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(consumeAndHang(spec))
	}
	os.Exit(m.Run())
}

func consumeAndHang(spec string) int {
	url, queue, _ := strings.Cut(spec, " ")
	c, err := dial(url)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	sub, err := c.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 1})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	d := <-sub.Deliveries()
	fmt.Printf("took %s\n", d.Body)
	select {} // the handler never returns
}

// A consumer killed (SIGKILL: no Close, no deferred code) in the middle of
// its handler loses nothing: its lease runs out, and a live consumer gets
// the message, marked redelivered. Kombu loses it: the row stays
// invisible for good.
func TestKilledConsumerLosesNothing(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		url := db.url("lease_timeout=1")
		c := open(t, url)
		queue := "killed." + randomHex(4)
		transporttest.DeclareQueue(t, c, transport.Queue{Name: queue})
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte("first")})
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte("second")})

		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+url+" "+queue)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line := make(chan string, 1)
		go func() {
			s := bufio.NewScanner(out)
			s.Scan()
			line <- s.Text()
		}()
		select {
		case l := <-line:
			if l != "took first" {
				t.Fatalf("the child consumer says %q", l)
			}
		case <-time.After(transporttest.DefaultTimeout):
			t.Fatal("the child consumer took nothing")
		}

		sub, err := c.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Cancel(ctx(t))
		d := <-sub.Deliveries()
		if string(d.Body) != "second" || d.Redelivered {
			t.Fatalf("the live consumer got %q (redelivered %t) first, want \"second\"", d.Body, d.Redelivered)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		killed := time.Now()
		select {
		case d := <-sub.Deliveries():
			if string(d.Body) != "first" || !d.Redelivered {
				t.Fatalf("after the kill: %q, redelivered %t; want \"first\", redelivered", d.Body, d.Redelivered)
			}
			t.Logf("the killed consumer's message came back %v after the kill (lease_timeout=1s)", time.Since(killed).Round(time.Millisecond))
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(transporttest.DefaultTimeout):
			t.Fatal("the message the killed consumer held was not restored")
		}
		_, _, goTables := db.tables()
		sqlDB := db.sql(t)
		transporttest.Eventually(t, "no lease left", func() bool { return count(t, sqlDB, "SELECT count(*) FROM "+goTables[3]) == 0 })
	})
}
