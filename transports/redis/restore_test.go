package redis_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// kombuEnvelope is a message as Kombu 5.2 writes it.
func kombuEnvelope(tag, exchange, routingKey, body string, priority int) string {
	return fmt.Sprintf(`{"body": "%s", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": `+
		`{"delivery_mode": 2, "delivery_info": {"exchange": "%s", "routing_key": "%s"}, "priority": %d, "body_encoding": "base64", "delivery_tag": "%s"}}`,
		b64(body), exchange, routingKey, priority, tag)
}

func b64(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	for i := 0; i < len(s); i += 3 {
		var n uint32
		k := min(3, len(s)-i)
		for j := range 3 {
			n <<= 8
			if j < k {
				n |= uint32(s[i+j])
			}
		}
		for j := range 4 {
			if j <= k {
				out = append(out, enc[n>>(18-6*j)&63])
			} else {
				out = append(out, '=')
			}
		}
	}
	return string(out)
}

func TestVisibilityTimeoutRestoresKombuEntries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := float64(time.Now().Add(-time.Hour).UnixMicro()) / 1e6
	// A Kombu consumer died holding three messages: one taken from a
	// queue through the default exchange, one through a direct exchange,
	// and one at priority 9. A fourth is recent: not yet due.
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.dx", "k"+sep+sep+"q2")
	entries := map[string][3]string{
		"t1": {kombuEnvelope("t1", "", "q1", "one", 0), "", "q1"},
		"t2": {kombuEnvelope("t2", "dx", "k", "two", 0), "dx", "k"},
		"t3": {kombuEnvelope("t3", "", "q1", "three", 9), "", "q1"},
		"t4": {kombuEnvelope("t4", "", "q1", "four", 0), "", "q1"},
	}
	for tag, v := range entries {
		e.raw.HSet(ctx, e.prefix+"unacked", tag, fmt.Sprintf(`[%s, "%s", "%s"]`, v[0], v[1], v[2]))
		score := old
		if tag == "t4" {
			score = float64(time.Now().UnixMicro()) / 1e6
		}
		e.raw.ZAdd(ctx, e.prefix+"unacked_index", goredis.Z{Score: score, Member: tag})
	}
	c := e.dial("visibility_timeout=60")
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q1"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q1", "q2"}, Prefetch: 10})
	got := map[string]*transport.Delivery{}
	for range 3 {
		d := recv(t, s)
		got[string(d.Body)] = d
	}
	for _, body := range []string{"one", "two", "three"} {
		d := got[body]
		if d == nil || !d.Redelivered {
			t.Errorf("%s: restored %+v", body, d)
		}
	}
	if got["two"] != nil && got["two"].Queue != "q2" {
		t.Errorf("direct exchange's message restored to %s", got["two"].Queue)
	}
	none(t, s, 200*time.Millisecond)
	un := e.unacked()
	if _, ok := un["t4"]; !ok || len(un) != 4 { // t4 kept; t1..t3 re-recorded by this consumer
		t.Errorf("unacked after restore: %v", slices.Collect(maps.Keys(un)))
	}
	// The restore lock is released.
	if n, _ := e.raw.Exists(ctx, e.prefix+"unacked_mutex").Result(); n != 0 {
		t.Error("unacked_mutex still held")
	}
}

func TestUnroutableKombuEntryIsKept(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := float64(time.Now().Add(-time.Hour).UnixMicro()) / 1e6
	// Kombu recorded a message it took through a topic exchange. A
	// restorer that does not know the exchange is a topic routes it as
	// direct, to nothing: Kombu would drop it; it stays.
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.tx", "a.*"+sep+`^a\..*?[^\.]$`+sep+"tq")
	e.raw.HSet(ctx, e.prefix+"unacked", "t1", fmt.Sprintf(`[%s, "tx", "a.b"]`, kombuEnvelope("t1", "tx", "a.b", "one", 0)))
	e.raw.ZAdd(ctx, e.prefix+"unacked_index", goredis.Z{Score: old, Member: "t1"})
	c := e.dial("unacked_restore_interval=0.1")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"tq"}, Prefetch: 1})
	none(t, s, 300*time.Millisecond)
	if _, ok := e.unacked()["t1"]; !ok {
		t.Fatal("the unroutable record was dropped")
	}
	// Once the connection knows the exchange's type, the next pass routes it.
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "tx", Type: transport.ExchangeTopic, Durable: true})
	if d := recv(t, s); string(d.Body) != "one" || !d.Redelivered || d.Queue != "tq" {
		t.Errorf("restored %+v", d)
	}
}

func TestLeaseKeepsLongHandlersFromRedelivery(t *testing.T) {
	e := newEnv(t)
	a := e.dial("visibility_timeout=1")
	b := e.dial("visibility_timeout=1", "unacked_restore_interval=0.2")
	transporttest.DeclareQueue(t, a, transport.Queue{Name: "q"})
	send(t, a, "q", "slow")
	sa := consume(t, a, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	d := recv(t, sa)
	sb := consume(t, b, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	// The handler runs three visibility timeouts; b restores every 200 ms.
	none(t, sb, 3*time.Second)
	ack(t, d)
	none(t, sb, 1500*time.Millisecond)
	transporttest.Eventually(t, "the ack", func() bool { return len(e.unacked()) == 0 })
}

// TestKilledConsumerChild is the consumer TestKilledConsumerLosesNothing
// runs in a child process and kills with SIGKILL. It does nothing when run
// by itself.
func TestKilledConsumerChild(t *testing.T) {
	url, queue, mode := os.Getenv("KOMBU_REDIS_CHILD_URL"), os.Getenv("KOMBU_REDIS_CHILD_QUEUE"), os.Getenv("KOMBU_REDIS_CHILD_MODE")
	if url == "" {
		t.Skip("run by TestKilledConsumerLosesNothing")
	}
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		mu.Lock()
		fmt.Fprintf(out, "got %s\n", msg.Body)
		out.Flush()
		mu.Unlock()
		if mode == "block" {
			select {} // killed mid-handler
		}
		return nil
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: queue}, Handler: h}},
		kombu.WithPrefetch(10), kombu.WithConcurrency(4))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	consumer.Run(ctx)
}

func startChild(t *testing.T, url, queue, mode string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledConsumerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KOMBU_REDIS_CHILD_URL="+url, "KOMBU_REDIS_CHILD_QUEUE="+queue, "KOMBU_REDIS_CHILD_MODE="+mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(stdout)
}

// kill9 kills the child and returns the lines it wrote that out had not
// read yet. They are read before Wait, which closes the pipe: lines still
// in it would be lost, and messages the child acked would look missing.
func kill9(t *testing.T, cmd *exec.Cmd, out *bufio.Scanner) []string {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for out.Scan() {
		rest = append(rest, out.Text())
	}
	cmd.Wait()
	return rest
}

func TestKilledConsumerLosesNothing(t *testing.T) {
	t.Run("mid-handler", func(t *testing.T) {
		e := newEnv(t)
		// A process killed while it holds the restore lock keeps every
		// restore waiting for unacked_mutex_expire (Kombu's 300 s): short
		// here, so that an unlucky kill does not stall the test.
		url := e.url("visibility_timeout=1", "unacked_mutex_expire=1")
		c := e.dial("visibility_timeout=1")
		transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
		send(t, c, "q", "precious")
		child, out := startChild(t, url, "q", "block")
		if !out.Scan() || out.Text() != "got precious" {
			t.Fatalf("child said %q, %v", out.Text(), out.Err())
		}
		// Taken and recorded: in flight, in the unacked hash, not the list.
		if len(e.list("q")) != 0 || len(e.unacked()) != 1 {
			t.Fatalf("while the child handles it: list %q, unacked %v", e.list("q"), e.unacked())
		}
		kill9(t, child, out)
		start := time.Now()
		s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
		var d *transport.Delivery
		select {
		case d = <-s.Deliveries():
		case <-time.After(wait):
			ttl, _ := e.raw.PTTL(context.Background(), e.prefix+"unacked_mutex").Result()
			t.Fatalf("not restored: list %q, unacked %v, index %v, restore lock TTL %v", e.list("q"), e.unacked(), e.unackedIndex(), ttl)
		}
		if string(d.Body) != "precious" || !d.Redelivered {
			t.Errorf("restored %q, redelivered %t", d.Body, d.Redelivered)
		}
		t.Logf("restored %v after the kill", time.Since(start))
		ack(t, d)
		none(t, s, 1500*time.Millisecond) // exactly once
	})
	t.Run("random-kill", func(t *testing.T) {
		// A child consumes and acks a stream of messages and is killed at
		// an arbitrary moment; every message must still be consumed
		// afterwards, except those the child had acked.
		e := newEnv(t)
		url := e.url("visibility_timeout=1", "unacked_mutex_expire=1")
		c := e.dial("visibility_timeout=1")
		transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
		const n = 3000
		ps := make([]*transport.Publishing, n)
		for i := range ps {
			ps[i] = &transport.Publishing{RoutingKey: "q", Body: []byte(strconv.Itoa(i))}
		}
		if err := c.(transport.BatchPublisher).PublishBatch(context.Background(), ps); err != nil {
			t.Fatal(err)
		}
		child, out := startChild(t, url, "q", "ack")
		seen := map[string]bool{}
		for len(seen) < n/3 && out.Scan() {
			seen[strings.TrimPrefix(out.Text(), "got ")] = true
		}
		for _, line := range kill9(t, child, out) {
			seen[strings.TrimPrefix(line, "got ")] = true
		}
		s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 50})
		got := map[string]bool{}
		for {
			var d *transport.Delivery
			select {
			case d = <-s.Deliveries():
			case <-time.After(5 * time.Second):
			}
			if d == nil {
				break
			}
			got[string(d.Body)] = true
			ack(t, d)
		}
		missing := 0
		for i := range n {
			k := strconv.Itoa(i)
			if !got[k] && !seen[k] {
				missing++
				t.Logf("missing %s", k)
			}
		}
		if missing > 0 {
			un := e.unacked()
			ttl, _ := e.raw.PTTL(context.Background(), e.prefix+"unacked_mutex").Result()
			t.Logf("list %d, unacked %d (index %v), restore lock TTL %v: %v", len(e.list("q")), len(un), e.unackedIndex(), ttl, un)
			t.Errorf("%d of %d messages lost (child handled %d, survivor %d)", missing, n, len(seen), len(got))
		}
		t.Logf("child handled %d before the kill; the survivor got %d", len(seen), len(got))
	})
}
