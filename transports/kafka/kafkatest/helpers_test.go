package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kombu-go/kombu/runtime/transport"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// admin is a bare franz-go client on the cluster, to look at what the
// transport stored.
func admin(t testing.TB, c *kfake.Cluster) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

// readAll reads every record of the topic from its start, until it has
// want of them or ctx ends.
func readAll(t testing.TB, ctx context.Context, c *kfake.Cluster, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s: %d records, want %d: %v", topic, len(out), want, ctx.Err())
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// committedOffsets is the group's committed offset per partition of the
// topic, after the connection flushed its commits (a passive declaration
// counts the queue, which commits first).
func committedOffsets(t testing.TB, ctx context.Context, conn transport.Conn, adm *kadm.Client, queue string) map[int32]int64 {
	t.Helper()
	if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: queue, Passive: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := adm.FetchOffsets(ctx, queue+"-consumer-group")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == queue {
			out[o.Partition] = o.At
		}
	})
	return out
}

func publish(t testing.TB, ctx context.Context, conn transport.Conn, queue, body string) {
	t.Helper()
	if err := conn.Publish(ctx, &transport.Publishing{RoutingKey: queue, Body: []byte(body), Confirm: true,
		Properties: transport.Properties{ContentType: "text/plain", ContentEncoding: "utf-8"}}); err != nil {
		t.Fatal(err)
	}
}

func receive(t testing.TB, ctx context.Context, sub transport.Subscription) *transport.Delivery {
	t.Helper()
	select {
	case d, ok := <-sub.Deliveries():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return d
	case <-ctx.Done():
		t.Fatal("no delivery:", ctx.Err())
	}
	return nil
}

func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's time", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
