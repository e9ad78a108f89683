package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestUnconfirmedPublish(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	for i := range 100 {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: q, Body: []byte(strconv.Itoa(i))})
	}
	transporttest.Eventually(t, "100 messages", func() bool { return ready(t, c, q) == 100 })
	got := bodies(t, c, q)
	for i, b := range got {
		if b != strconv.Itoa(i) {
			t.Fatalf("message %d is %q: out of order", i, b)
		}
	}
}

func TestConcurrentMandatoryAttributesReturns(t *testing.T) {
	t.Parallel()
	c := open(t)
	ex := exchange(t, c, "direct")
	q := queue(t, c, "q", nil)
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: "routed"})
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "routed"
			if i%2 == 1 {
				key = "unroutable"
			}
			p := &transport.Publishing{Exchange: ex, RoutingKey: key, Mandatory: true, Confirm: true, Body: []byte(strconv.Itoa(i))}
			if i%4 == 0 {
				p.MessageID = fmt.Sprintf("own-id-%d", i) // some carry their own id
			}
			errs[i] = c.Publish(ctxT(t), p)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("publisher %d (routable): %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, transport.ErrUnroutable) {
			t.Errorf("publisher %d (unroutable): %v, want ErrUnroutable", i, err)
		}
	}
	if n := ready(t, c, q); n != 25 {
		t.Errorf("queue holds %d messages, want 25", n)
	}
	// The generated ids are unique and the ones given are kept.
	ids := map[string]bool{}
	for range 25 {
		d := get(t, c, q)
		i, _ := strconv.Atoi(string(d.Body))
		switch {
		case i%4 == 0 && d.Properties.MessageID != fmt.Sprintf("own-id-%d", i):
			t.Errorf("message %d has id %q, want its own", i, d.Properties.MessageID)
		case d.Properties.MessageID == "" || ids[d.Properties.MessageID]:
			t.Errorf("message %d has id %q: empty or seen before", i, d.Properties.MessageID)
		}
		ids[d.Properties.MessageID] = true
	}
}

func TestPublishBatchSaysWhichFailed(t *testing.T) {
	t.Parallel()
	c := open(t)
	ex := exchange(t, c, "direct")
	q := queue(t, c, "q", nil)
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: "ok"})
	var ps []*transport.Publishing
	for i := range 10 {
		key := "ok"
		if i == 3 || i == 7 {
			key = "nowhere"
		}
		ps = append(ps, &transport.Publishing{Exchange: ex, RoutingKey: key, Mandatory: true, Confirm: true, Body: []byte(strconv.Itoa(i))})
	}
	err := c.(transport.BatchPublisher).PublishBatch(ctxT(t), ps)
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("batch: %v, want ErrUnroutable", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 of 10 messages", "message 3 of 10", "message 7 of 10"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "message 0 of") || strings.Contains(msg, "message 4 of") {
		t.Errorf("error %q names routed messages", msg)
	}
	if n := ready(t, c, q); n != 8 {
		t.Errorf("queue holds %d, want 8", n)
	}
}

func TestPublishToMissingExchange(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	missing := name(t, "missing")
	err := c.Publish(ctxT(t), &transport.Publishing{Exchange: missing, RoutingKey: "k", Confirm: true, Body: []byte("x")})
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), "no exchange '"+missing+"'") {
		t.Fatalf("confirmed publish to a missing exchange: %v, want ErrNotFound naming it", err)
	}
	// The broker closed the channel; the next publishes get a new one.
	toQueue(t, c, q, "after")
	// Unconfirmed publishes cannot know, but the one after still goes through.
	if err := c.Publish(ctxT(t), &transport.Publishing{Exchange: missing, RoutingKey: "k", Body: []byte("x")}); err != nil {
		t.Fatalf("unconfirmed publish to a missing exchange: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // let the broker close that channel
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: q, Body: []byte("unconfirmed after")})
	transporttest.Eventually(t, "both messages", func() bool { return ready(t, c, q) == 2 })
}

func TestPropertiesRoundTrip(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", map[string]any{"x-max-priority": 10})
	ts := time.Unix(1700000000, 0)
	p := &transport.Publishing{
		RoutingKey: q,
		Confirm:    true,
		Body:       []byte(`{"a": 1}`),
		Headers: map[string]any{
			"compression": "application/x-gzip",
			"int":         42,
			"uint8":       uint8(7),
			"neg":         int64(-5),
			"float":       float32(1.5),
			"bool":        true,
			"list":        []string{"a", "b"},
			"nested":      map[string]any{"deep": map[string]any{"n": 1}, "s": "x"},
			"when":        ts,
			"raw":         []byte{0, 1},
		},
		Properties: transport.Properties{
			ContentType:     "application/json",
			ContentEncoding: "utf-8",
			DeliveryMode:    transport.Transient,
			Priority:        3,
			CorrelationID:   "corr-1",
			ReplyTo:         "replies",
			Expiration:      time.Minute,
			MessageID:       "msg-1",
			Timestamp:       ts,
			Type:            "order.placed",
			UserID:          "guest",
			AppID:           "kombu-go-test",
		},
	}
	transporttest.Publish(t, c, p)
	d := get(t, c, q)
	if string(d.Body) != `{"a": 1}` {
		t.Errorf("body %q", d.Body)
	}
	want := p.Properties
	got := d.Properties
	if !got.Timestamp.Equal(want.Timestamp) {
		t.Errorf("timestamp %v, want %v", got.Timestamp, want.Timestamp)
	}
	got.Timestamp, want.Timestamp = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("properties\n got %+v\nwant %+v", got, want)
	}
	wantHeaders := map[string]any{
		"compression": "application/x-gzip",
		"int":         int64(42),
		"uint8":       int64(7),
		"neg":         int64(-5),
		"float":       float64(1.5),
		"bool":        true,
		"list":        []any{"a", "b"},
		"nested":      map[string]any{"deep": map[string]any{"n": int64(1)}, "s": "x"},
		"raw":         []byte{0, 1},
	}
	when, _ := d.Headers["when"].(time.Time)
	delete(d.Headers, "when")
	if !when.Equal(ts) {
		t.Errorf("header when = %v, want %v", when, ts)
	}
	if !reflect.DeepEqual(d.Headers, wantHeaders) {
		t.Errorf("headers\n got %#v\nwant %#v", d.Headers, wantHeaders)
	}
	if d.Exchange != "" || d.RoutingKey != q || d.Queue != q || d.Redelivered {
		t.Errorf("delivery info: exchange %q routing key %q queue %q redelivered %v", d.Exchange, d.RoutingKey, d.Queue, d.Redelivered)
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte("x"),
		Headers:    map[string]any{"n": 1, "d": 1500 * time.Millisecond},
		Properties: transport.Properties{Expiration: 60 * time.Second, ContentType: "text/plain", ContentEncoding: "utf-8"}})

	// Read it with amqp091-go itself, to see the properties as sent.
	raw, err := amqp091.Dial(brokertest.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get(q, true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if d.Expiration != "60000" || d.DeliveryMode != 2 || d.ContentType != "text/plain" || d.ContentEncoding != "utf-8" {
		t.Errorf("expiration %q delivery mode %d content type %q encoding %q; want \"60000\", 2, text/plain, utf-8",
			d.Expiration, d.DeliveryMode, d.ContentType, d.ContentEncoding)
	}
	// Integers travel as AMQP longs, durations as milliseconds.
	if !reflect.DeepEqual(d.Headers, amqp091.Table{"n": int64(1), "d": int64(1500)}) {
		t.Errorf("headers on the wire %#v", d.Headers)
	}
}

func TestUserIDMustMatch(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	err := c.Publish(ctxT(t), &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte("x"),
		Properties: transport.Properties{UserID: "mallory"}})
	if err == nil || !strings.Contains(err.Error(), "user_id property set to 'mallory'") {
		t.Fatalf("publish with another user's id: %v", err)
	}
	toQueue(t, c, q, "still works")
}

func TestManyUnroutableReturnsDoNotBlock(t *testing.T) {
	t.Parallel()
	c := open(t)
	ex := exchange(t, c, "fanout")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// 500 returns arrive in a burst while nobody claims them: a batch
	// pipelines all publishes before waiting for any confirm.
	ps := make([]*transport.Publishing, 500)
	for i := range ps {
		ps[i] = &transport.Publishing{Exchange: ex, Mandatory: true, Body: []byte(strconv.Itoa(i))}
	}
	err := c.(transport.BatchPublisher).PublishBatch(ctx, ps)
	if !errors.Is(err, transport.ErrUnroutable) || !strings.Contains(err.Error(), "500 of 500 messages") {
		t.Fatalf("batch of unroutable messages: %.200v", err)
	}

	// Publishers that give up before their confirm leave returns nobody
	// claims; later publishers are not held up by them.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			short, cancelShort := context.WithTimeout(ctx, time.Duration(i%10)*50*time.Microsecond)
			defer cancelShort()
			_ = c.Publish(short, &transport.Publishing{Exchange: ex, Mandatory: true, Body: []byte(strconv.Itoa(i))})
		}()
	}
	wg.Wait()
	q := queue(t, c, "q", nil)
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q})
	if err := c.Publish(ctx, &transport.Publishing{Exchange: ex, Mandatory: true, Confirm: true, Body: []byte("routed")}); err != nil {
		t.Fatalf("routable publish after the returns: %v", err)
	}
}

// Mandatory messages that share a message id, one routable and one not,
// published at once: each learns its own fate, never the other's (a return
// names its message only by its properties). The same within one batch.
func TestMandatorySharedMessageIDs(t *testing.T) {
	t.Parallel()
	c := open(t)
	ex := exchange(t, c, "direct")
	q := queue(t, c, "q", nil)
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: "routed"})
	const pairs = 100
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for pair := range pairs {
		for _, routed := range []bool{true, false} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "unroutable"
				if routed {
					key = "routed"
				}
				err := c.Publish(ctxT(t), &transport.Publishing{Exchange: ex, RoutingKey: key, Mandatory: true, Confirm: true,
					Properties: transport.Properties{MessageID: fmt.Sprintf("shared-%d", pair)}})
				if routed != (err == nil) || !routed && !errors.Is(err, transport.ErrUnroutable) {
					wrong.Add(1)
					t.Errorf("pair %d, routed %v: %v", pair, routed, err)
				}
			}()
		}
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d of %d publishes were told the other's fate", n, 2*pairs)
	}

	var batch []*transport.Publishing
	for i := range 20 {
		key := "routed"
		if i%2 == 1 {
			key = "unroutable"
		}
		batch = append(batch, &transport.Publishing{Exchange: ex, RoutingKey: key, Mandatory: true, Confirm: true,
			Properties: transport.Properties{MessageID: fmt.Sprintf("batch-%d", i/4)}}) // each id four times
	}
	err := c.(transport.BatchPublisher).PublishBatch(ctxT(t), batch)
	for i := range batch {
		named := strings.Contains(fmt.Sprint(err), fmt.Sprintf("message %d of 20:", i))
		if named != (i%2 == 1) {
			t.Errorf("batch message %d (routable %v): named in the error: %v", i, i%2 == 0, named)
		}
	}
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("batch: %v, want ErrUnroutable for the unroutable half", err)
	}
	if n := ready(t, c, q); n != pairs+10 {
		t.Errorf("queue holds %d messages, want %d", n, pairs+10)
	}
}
