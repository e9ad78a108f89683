package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echoes runs a request/reply consumer on queue that answers each number
// with itself and records the numbers it was asked.
func echoes(t *testing.T, conn *kombu.Connection, queue kombu.Queue, opts ...kombu.ConsumerOption) func() []int64 {
	t.Helper()
	var mu sync.Mutex
	var asked []int64
	h := kombu.Replying(func(_ context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
		mu.Lock()
		asked = append(asked, n.Value)
		mu.Unlock()
		return n, nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queue, Handler: h}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(asked)
	}
}

// deathReason returns the reason of a dead letter's latest death.
func deathReason(t *testing.T, msg *kombu.Message) string {
	t.Helper()
	deaths, _ := msg.Headers["x-death"].([]any)
	if len(deaths) == 0 {
		t.Fatalf("dead letter without x-death: %v", msg.Headers)
	}
	d, _ := deaths[0].(map[string]any)
	reason, _ := d["reason"].(string)
	return reason
}

// A request whose caller gave up before any consumer ran is not handled
// when one starts: the caller's deadline became the request's expiration,
// and the broker dead-lettered it at the deadline, reason "expired". (It
// used to wait in the queue with no expiration, and be handled for nobody.)
func TestStaleRequestExpiresInTheQueue(t *testing.T) {
	conn := dial(t)
	if err := workAndDeadLetter.Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	quotes := kombu.Queue{Name: "quotes", DeadLetterExchange: "dlx"}
	if _, err := quotes.Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("quotes"), kombu.WithSerializer("protobuf"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out wrapperspb.Int64Value
	if err := p.Call(ctx, wrapperspb.Int64(1), &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with nobody consuming: %v, want DeadlineExceeded", err)
	}
	_, dead := getBody(t, conn, "dead")
	if r := deathReason(t, dead); r != "expired" {
		t.Fatalf("the stale request was dead-lettered with reason %q, want expired", r)
	}

	asked := echoes(t, conn, quotes)
	if err := p.Call(ctxT(t), wrapperspb.Int64(2), &out); err != nil || out.Value != 2 {
		t.Fatalf("fresh call: %d, %v", out.Value, err)
	}
	if got := asked(); !slices.Equal(got, []int64{2}) {
		t.Fatalf("the handler was asked %v, want only the fresh request [2]", got)
	}
}

// A request keeps a shorter expiration given by the caller, and the
// caller's deadline bounds a longer one: the dead letter's x-death says
// what its expiration was.
func TestCallExpirationIsTheShorterOfDeadlineAndOption(t *testing.T) {
	conn := dial(t)
	if err := workAndDeadLetter.Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	if _, err := (kombu.Queue{Name: "q", DeadLetterExchange: "dlx"}).Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("q"))
	for _, tt := range []struct {
		timeout, option time.Duration
		min, max        int64 // milliseconds
	}{
		{timeout: 200 * time.Millisecond, option: time.Hour, min: 1, max: 201},
		{timeout: time.Hour, option: 30 * time.Millisecond, min: 30, max: 30},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
		go func() {
			_ = p.Call(ctx, "ping", new(string), kombu.WithExpiration(tt.option))
		}()
		_, dead := getBody(t, conn, "dead")
		cancel()
		deaths, _ := dead.Headers["x-death"].([]any)
		death, _ := deaths[0].(map[string]any)
		ms, err := strconv.ParseInt(fmt.Sprint(death["original-expiration"]), 10, 64)
		if err != nil || ms < tt.min || ms > tt.max || death["reason"] != "expired" {
			t.Errorf("timeout %v, WithExpiration(%v): dead letter's x-death %v, want reason expired and original-expiration %d to %d ms",
				tt.timeout, tt.option, death, tt.min, tt.max)
		}
	}
}

// The handler's context ends at the caller's deadline, which the message
// gives as its Deadline; a call without a deadline gives the handler none.
func TestHandlerContextEndsAtTheCallersDeadline(t *testing.T) {
	conn := dial(t)
	type seen struct {
		ctx, msg     time.Time
		ctxOK, msgOK bool
	}
	got := make(chan seen, 1)
	h := kombu.Replying(func(ctx context.Context, n *wrapperspb.Int64Value, msg *kombu.Message) (*wrapperspb.Int64Value, error) {
		var s seen
		s.ctx, s.ctxOK = ctx.Deadline()
		s.msg, s.msgOK = msg.Deadline()
		got <- s
		return n, nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "echo"}, Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("echo"), kombu.WithSerializer("protobuf"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := p.Call(ctx, wrapperspb.Int64(1), new(wrapperspb.Int64Value)); err != nil {
		t.Fatal(err)
	}
	s := <-got
	// The header carries seconds as a float: sub-microsecond precision.
	if !s.ctxOK || !s.msgOK || s.ctx.Sub(deadline).Abs() > time.Microsecond || !s.msg.Equal(s.ctx) {
		t.Fatalf("handler saw ctx deadline %v (%v) and message deadline %v (%v), want the caller's %v",
			s.ctx, s.ctxOK, s.msg, s.msgOK, deadline)
	}

	if err := p.Call(context.Background(), wrapperspb.Int64(2), new(wrapperspb.Int64Value)); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.ctxOK || s.msgOK {
		t.Fatalf("a call without a deadline gave the handler deadline %v and the message %v", s.ctx, s.msg)
	}
}

// A message already past the deadline its "expires" header gives never
// reaches the handler: it is rejected (here dead-lettered, reason
// "rejected") and the next message is handled. Kombu's pidbox writes the
// header as epoch seconds, Celery as an ISO 8601 date.
func TestMessagePastItsDeadlineIsDroppedBeforeTheHandler(t *testing.T) {
	conn := dial(t)
	var mu sync.Mutex
	var handled []string
	h := kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
		mu.Lock()
		handled = append(handled, string(msg.Body))
		mu.Unlock()
		return nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "work", DeadLetterExchange: "dlx"}, Handler: h}},
		kombu.WithTopology(workAndDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"))
	past := time.Now().Add(-time.Second)
	for body, expires := range map[string]any{
		"stale, epoch seconds":  float64(past.UnixNano()) / 1e9,
		"stale, ISO 8601 (UTC)": past.UTC().Format("2006-01-02T15:04:05.999999"),
	} {
		mustPublish(t, p.Publish(ctxT(t), body, kombu.WithHeaders(map[string]any{kombu.ExpiresHeader: expires})))
	}
	mustPublish(t, p.Publish(ctxT(t), "fresh", kombu.WithHeaders(map[string]any{kombu.ExpiresHeader: float64(time.Now().Add(time.Hour).Unix())})))
	mustPublish(t, p.Publish(ctxT(t), "no deadline", kombu.WithHeaders(map[string]any{kombu.ExpiresHeader: 0.0})))
	run(t, c)

	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 })
	for range 2 {
		body, dead := getBody(t, conn, "dead")
		if r := deathReason(t, dead); r != "rejected" || body[:5] != "stale" {
			t.Errorf("dead letter %q with reason %q, want a stale message, rejected", body, r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handled, []string{"fresh", "no deadline"}) {
		t.Fatalf("handled %q, want only the fresh message and the one without a deadline", handled)
	}
}

func TestMessageDeadline(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 250_000_000, time.UTC)
	for _, tt := range []struct {
		header any
		want   time.Time
	}{
		{float64(at.UnixNano()) / 1e9, at},
		{at.Unix(), at.Truncate(time.Second)},
		{int(at.Unix()), at.Truncate(time.Second)},
		{"2030-05-06T07:08:09.250000", at},
		{"2030-05-06T09:08:09.25+02:00", at},
		{"2030-05-06T07:08:09.25Z", at},
		{[]byte("2030-05-06T07:08:09.250000"), at},
		{at, at},
		{0.0, time.Time{}},
		{int64(0), time.Time{}},
		{-5.0, time.Time{}},
		{1e300, time.Time{}},
		{"tomorrow", time.Time{}},
		{nil, time.Time{}},
		{true, time.Time{}},
	} {
		msg := &kombu.Message{Headers: map[string]any{kombu.ExpiresHeader: tt.header}}
		got, ok := msg.Deadline()
		if !got.Equal(tt.want) || ok != !tt.want.IsZero() {
			t.Errorf("expires %#v: Deadline() = %v, %v; want %v", tt.header, got, ok, tt.want)
		}
	}
}

// A handler that finishes after its caller's deadline sends no reply: the
// caller has stopped waiting.
func TestNoReplyPastTheCallersDeadline(t *testing.T) {
	conn := dial(t)
	release, finished := make(chan struct{}), make(chan struct{}, 1)
	squares := kombu.Replying(func(_ context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
		if n.Value == 13 {
			<-release
		}
		return wrapperspb.Int64(n.Value * n.Value), nil
	})
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		err := squares.HandleMessage(ctx, msg) // replies, if it does, before it returns
		finished <- struct{}{}
		return err
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "squares"}, Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"), kombu.WithSerializer("protobuf"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out wrapperspb.Int64Value
	if err := p.Call(ctx, wrapperspb.Int64(13), &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	close(release) // the handler finishes now, past the deadline
	<-finished
	// Replies arrive in order: a reply to 13 would be counted before 3's.
	if err := p.Call(ctxT(t), wrapperspb.Int64(3), &out); err != nil || out.Value != 9 {
		t.Fatalf("call after a late finish: %d, %v", out.Value, err)
	}
	if n := conn.LateReplies(); n != 0 {
		t.Fatalf("%d late replies: the handler replied past the caller's deadline", n)
	}
}

// WithPastDeadlineHandler sees the messages a consumer would drop for their
// deadline; what it leaves unsettled is rejected (dead-lettered) as before,
// what it settles stays settled.
func TestPastDeadlineHandlerSeesStaleMessages(t *testing.T) {
	conn := dial(t)
	var mu sync.Mutex
	var handled, stale []string
	h := kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, string(msg.Body))
		return nil
	})
	late := kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
		mu.Lock()
		stale = append(stale, string(msg.Body))
		mu.Unlock()
		if string(msg.Body) == "stale, acked" {
			return msg.Ack()
		}
		return nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "work", DeadLetterExchange: "dlx"}, Handler: h}},
		kombu.WithTopology(workAndDeadLetter), kombu.WithPastDeadlineHandler(late))
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"))
	past := float64(time.Now().Add(-time.Second).UnixNano()) / 1e9
	for _, body := range []string{"stale, acked", "stale, left"} {
		mustPublish(t, p.Publish(ctxT(t), body, kombu.WithHeaders(map[string]any{kombu.ExpiresHeader: past})))
	}
	mustPublish(t, p.Publish(ctxT(t), "fresh", kombu.WithHeaders(map[string]any{kombu.ExpiresHeader: float64(time.Now().Add(time.Hour).Unix())})))
	run(t, c)

	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 1 && len(stale) == 2 })
	if body, dead := getBody(t, conn, "dead"); body != "stale, left" || deathReason(t, dead) != "rejected" {
		t.Errorf("dead letter %q, want the stale message the handler left unsettled, rejected", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handled, []string{"fresh"}) || !slices.Equal(stale, []string{"stale, acked", "stale, left"}) {
		t.Fatalf("handler saw %q, past-deadline handler %q", handled, stale)
	}
}
