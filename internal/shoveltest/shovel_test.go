//go:build unix

package shoveltest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/shoveltest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/filesystem"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// n is how many messages each fault test moves.
func n() int {
	if testing.Short() {
		return 4000
	}
	return 20000
}

// faultBatch is the fault tests' batch size: smaller than the default,
// so that a fault finds batches in flight and the stream is long enough
// for it to come mid-way.
var faultBatch = kombu.WithShovelBatchSize(20)

// ends names a URL for each transport, fresh for each call: a memory
// broker and a folder of their own, a private redis-server's database, the
// shared RabbitMQ (whose queues the checks name uniquely and delete).
func ends(t *testing.T) map[string]func() string {
	amqp := brokertest.AMQPURL(t)
	srv := brokertest.StartRedis(t)
	db := 0
	return map[string]func() string{
		"memory":     func() string { return "memory:///" + shoveltest.Name("broker") },
		"amqp":       func() string { return amqp },
		"redis":      func() string { db = (db + 1) % 16; return srv.URL(db) },
		"filesystem": func() string { return "filesystem://" + t.TempDir() },
	}
}

// Every message arrives as its producer sent it, between any two of
// kombu-go's transports.
func TestMovesMessagesAsTheyAreBetweenTransports(t *testing.T) {
	e := ends(t)
	for _, src := range []string{"memory", "amqp", "redis", "filesystem"} {
		for _, dst := range []string{"memory", "amqp", "redis", "filesystem"} {
			t.Run(src+"→"+dst, func(t *testing.T) {
				shoveltest.AsIs(t, e[src](), e[dst]())
			})
		}
	}
}

// A priority or an expiration the destination cannot honour is dropped,
// not refused: the message still moves.
func TestDropsWhatTheDestinationCannotCarry(t *testing.T) {
	e := ends(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := shoveltest.Dial(t, e["amqp"]())
	for _, to := range []string{"redis", "filesystem"} {
		t.Run(to, func(t *testing.T) {
			dst := shoveltest.Dial(t, e[to]())
			in := kombu.Queue{Name: shoveltest.Name("in"), MaxPriority: 9}
			t.Cleanup(func() { _, _ = in.Delete(context.Background(), src) })
			if err := kombu.NewProducer(src, kombu.WithRoutingKey(in.Name), kombu.WithDeclare(in)).
				Publish(ctx, "urgent", kombu.WithPriority(5), kombu.WithExpiration(time.Hour)); err != nil {
				t.Fatal(err)
			}
			out := kombu.Queue{Name: "out"}
			s, err := kombu.NewShovel(src, in, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey("out"),
				kombu.WithShovelDeclare(kombu.ShovelDestination, out), kombu.WithShovelDrain())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Run(ctx); err != nil {
				t.Fatal(err)
			}
			m, err := out.Get(ctx, dst, kombu.WithAutoAck())
			if err != nil {
				t.Fatal(err)
			}
			wantPriority := uint8(5) // Redis has priorities
			if to == "filesystem" {
				wantPriority = 0
			}
			if string(m.Body) != "urgent" || m.Properties.Expiration != 0 || m.Properties.Priority != wantPriority {
				t.Errorf("got %q with expiration %v and priority %d; want the message, no expiration and priority %d",
					m.Body, m.Properties.Expiration, m.Properties.Priority, wantPriority)
			}
		})
	}
}

// logResult logs a fault test's figures in one line, for the report.
func logResult(t *testing.T, r shoveltest.Result, st kombu.ShovelStats) {
	t.Logf("FIGURES %s: %s; shovel: moved %d, batches %d, republished %d, requeued %d, ack lost %d",
		t.Name(), r, st.Moved, st.Batches, st.Republished, st.Requeued, st.AckLost)
}

// The destination's Redis is killed (SIGKILL) mid-stream and restarted:
// what it had not confirmed is published again once it is back; nothing
// the source held is lost.
func TestDestinationRedisKilled(t *testing.T) {
	srv := brokertest.StartRedis(t)
	for _, from := range []string{"memory", "amqp"} {
		t.Run("from "+from, func(t *testing.T) {
			src := "memory:///" + shoveltest.Name("src")
			if from == "amqp" {
				src = brokertest.AMQPURL(t)
			}
			r, st := shoveltest.Outage(t, src, srv.URL(0), n(), []shoveltest.Fault{{
				Name: "redis-server SIGKILL", Down: srv.Kill, Up: srv.Start, Pause: 500 * time.Millisecond,
			}}, faultBatch)
			logResult(t, r, st)
		})
	}
}

// The source's Redis is killed mid-stream and restarted: the messages the
// shovel held unacknowledged go back to the source queue and are moved
// again; none is lost. Now and then (one run in eight, seen with main's
// take receipts) the kill leaves a few messages in Kombu's unacked hash
// that the Redis transport does not return at once: they wait for the
// visibility timeout (5 s here, an hour by default), as in Kombu, and are
// moved then. Without the short timeout the test would wait an hour.
func TestSourceRedisKilled(t *testing.T) {
	srv := brokertest.StartRedis(t)
	for _, to := range []string{"memory", "amqp"} {
		t.Run("to "+to, func(t *testing.T) {
			dst := "memory:///" + shoveltest.Name("dst")
			if to == "amqp" {
				dst = brokertest.AMQPURL(t)
			}
			r, st := shoveltest.Outage(t, srv.URL(0)+"?visibility_timeout=5", dst, n(), []shoveltest.Fault{{
				Name: "redis-server SIGKILL", Down: srv.Kill, Up: srv.Start, Pause: 500 * time.Millisecond,
			}}, faultBatch)
			logResult(t, r, st)
		})
	}
}

// RabbitMQ at both ends, each reached through a proxy of the test's own:
// the destination's connections are cut mid-stream (publisher confirms
// lost on the way), then the source's (deliveries held unacknowledged).
func TestRabbitMQConnectionsCut(t *testing.T) {
	url := brokertest.AMQPURL(t)
	srcProxy, src := brokertest.ProxyURL(t, url, "5672")
	dstProxy, dst := brokertest.ProxyURL(t, url, "5672")
	r, st := shoveltest.Outage(t, src, dst, n(), []shoveltest.Fault{
		{Name: "destination cut", Down: dstProxy.Cut, Up: dstProxy.Restore, Pause: 300 * time.Millisecond},
		{Name: "source cut", Down: srcProxy.Cut, Up: srcProxy.Restore, Pause: 300 * time.Millisecond},
	}, faultBatch)
	logResult(t, r, st)
}

// The shovel's own process is killed (SIGKILL) mid-stream; a new one takes
// over: every message arrives at least once.
func TestShovelProcessKilled(t *testing.T) {
	if os.Getenv("KOMBU_SHOVEL_CHILD") != "" {
		t.Skip("the child process's own run")
	}
	url := brokertest.AMQPURL(t)
	src, dst, watch := shoveltest.Dial(t, url), shoveltest.Dial(t, url), shoveltest.Dial(t, url)
	in, out := kombu.Queue{Name: shoveltest.Name("in")}, kombu.Queue{Name: shoveltest.Name("out")}
	t.Cleanup(func() {
		_, _ = in.Delete(context.Background(), src)
		_, _ = out.Delete(context.Background(), src)
	})
	total := n()
	l := shoveltest.NewLedger(total)
	if _, err := out.Declare(context.Background(), dst); err != nil {
		t.Fatal(err)
	}
	l.Fill(t, src, in)
	l.Consume(t, watch, out)

	child := exec.Command(os.Args[0], "-test.run=^TestShovelChild$", "-test.v")
	child.Env = append(os.Environ(), "KOMBU_SHOVEL_CHILD=1", "KOMBU_SHOVEL_URL="+url,
		"KOMBU_SHOVEL_IN="+in.Name, "KOMBU_SHOVEL_OUT="+out.Name)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	for l.Distinct() < total/3 {
		time.Sleep(time.Millisecond)
	}
	at := l.Distinct()
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	t.Logf("shovel process killed at %d of %d arrived", at, total)

	s, err := kombu.NewShovel(src, in, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey(out.Name))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- s.Run(ctx) }()
	if !l.WaitAll(60 * time.Second) {
		t.Errorf("after 60s %d of %d arrived", l.Distinct(), total)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	r := l.Check(t)
	r.Elapsed = elapsed // the second shovel's
	logResult(t, r, s.Stats())
}

// TestShovelChild is the shovel process TestShovelProcessKilled kills.
func TestShovelChild(t *testing.T) {
	if os.Getenv("KOMBU_SHOVEL_CHILD") == "" {
		t.Skip("run by TestShovelProcessKilled")
	}
	url := os.Getenv("KOMBU_SHOVEL_URL")
	src, dst := shoveltest.Dial(t, url), shoveltest.Dial(t, url)
	// Small batches, so that the kill finds some in flight.
	s, err := kombu.NewShovel(src, kombu.Queue{Name: os.Getenv("KOMBU_SHOVEL_IN")}, dst, kombu.Exchange{},
		kombu.WithShovelRoutingKey(os.Getenv("KOMBU_SHOVEL_OUT")), kombu.WithShovelBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Run(context.Background()) // until killed
}

// BenchmarkShovelAcross moves messages between transports, batched (the
// default, 100) and one by one (WithShovelBatchSize(1), RabbitMQ's
// shovel's way): messages per second in the msgs/s column.
func BenchmarkShovelAcross(b *testing.B) {
	amqp := brokertest.AMQPURL(b)
	srv := brokertest.StartRedis(b)
	routes := []struct{ name, src, dst string }{
		{"redis→amqp", srv.URL(1), amqp},
		{"amqp→redis", amqp, srv.URL(2)},
		{"redis→redis", srv.URL(3), srv.URL(4)},
	}
	for _, r := range routes {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", r.name, size), func(b *testing.B) {
				shoveltest.Bench(b, r.src, r.dst, size)
			})
		}
	}
}
