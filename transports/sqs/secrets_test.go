package sqs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
)

// noSecret fails the test if what holds the secret, as written or
// percent-encoded in the URL.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, form := range []string{secret, strings.ReplaceAll(secret, "/", "%2F"), "s3cr3t"} {
		if strings.Contains(s, form) {
			t.Errorf("%s shows the secret (%q): %s", what, form, s)
		}
	}
}

// The secret access key appears in no log line, error or URL() when the
// transport fails: a refused port, an endpoint that goes away under a
// consumer (its deletes, visibility extensions and receives fail and are
// logged), at Debug level, through the runtime's logger and the driver's.
// goaws checks no credentials (it signs nothing), so a refused signature
// cannot be provoked against it; TestNoCredentials covers the credentials
// the SDK cannot find.
func TestSecretsNeverLogged(t *testing.T) {
	g := startGoaws(t)
	var logs brokertest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// A refused port, through the runtime.
	cx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	refused := "sqs://AKIDTEST:" + strings.ReplaceAll(secret, "/", "%2F") + "@127.0.0.1:1?region=us-east-1&polling_interval=0.05"
	conn, err := kombu.Dial(cx, refused, kombu.WithLogger(log))
	if err == nil {
		noSecret(t, "URL()", conn.URL())
		err = kombu.NewProducer(conn).Publish(cx, "x", kombu.WithRoutingKey("q"))
		_ = conn.Close()
	}
	if err == nil {
		t.Fatal("a publish to a refused port succeeded")
	}
	noSecret(t, "the refused port's error", err.Error())

	// The emulator goes away under a consumer holding a message, then
	// comes back.
	conn, err = kombu.Dial(ctx(t), g.URL(""), kombu.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	noSecret(t, "URL()", conn.URL())
	q := kombu.Queue{Name: uniq("secrets-")}
	if _, err := q.Declare(ctx(t), conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn)
	for range 2 {
		if err := p.Publish(ctx(t), "held", kombu.WithRoutingKey(q.Name)); err != nil {
			t.Fatal(err)
		}
	}
	held, err := q.Get(ctx(t), conn)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 2)
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		handled <- struct{}{}
		return nil
	})}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer got nothing")
	}
	g.Stop()
	// The ack's delete fails, the visibility extensions and the
	// consumer's receives fail: each is logged.
	if err := held.Ack(); err != nil {
		noSecret(t, "Ack's error", err.Error())
	}
	time.Sleep(time.Duration(testVisibility) * time.Second / 3 * 2)
	if err := p.Publish(ctx(t), "down", kombu.WithRoutingKey(q.Name)); err != nil {
		noSecret(t, "the publish error while down", err.Error())
	} else {
		t.Error("a publish succeeded while the emulator was down")
	}
	g.Start(t)
	stop()
	if err := <-done; err != nil {
		noSecret(t, "Run's error", err.Error())
	}
	_, _ = q.Delete(ctx(t), conn)

	// And the driver's own logger, on a refused port.
	u, err := transport.Parse(refused)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "URL()", u.String())
	c, err := sqs.Driver{}.Open(context.Background(), u, transport.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if _, err := c.Get(cx2, "q", false); err != nil {
		noSecret(t, "Get's error", err.Error())
	}
	_ = c.Close()

	out := logs.String()
	if !strings.Contains(out, "level=WARN") && !strings.Contains(out, "level=ERROR") {
		t.Errorf("nothing was logged as a failure, so nothing was checked:\n%s", out)
	}
	noSecret(t, "the log", out)
	t.Logf("%d log lines checked:\n%s", strings.Count(out, "\n"), out)
}

// An endpoint that accepts the TCP connection but never answers: a
// request ends with its context's deadline, with an error that says so.
func TestEndpointAcceptsButNeverAnswers(t *testing.T) {
	addr := brokertest.SilentListener(t).Addr

	url := "sqs://AKIDTEST:" + strings.ReplaceAll(secret, "/", "%2F") + "@" + addr + "?region=us-east-1"
	c, err := openURL(t, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, op := range map[string]func(context.Context) error{
		"declare": func(cx context.Context) error {
			_, err := c.DeclareQueue(cx, transport.Queue{Name: "q"})
			return err
		},
		"publish": func(cx context.Context) error {
			return c.Publish(cx, &transport.Publishing{RoutingKey: "q", Body: []byte("x"), Confirm: true})
		},
	} {
		cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		err := op(cx)
		el := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("%s on a silent endpoint succeeded", name)
		}
		if el > 3*time.Second {
			t.Errorf("%s took %v, ctx allowed 2s", name, el)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want an error matching context.DeadlineExceeded", name, err)
		}
		noSecret(t, name+"'s error", err.Error())
		t.Logf("%s: %v after %v", name, err, el.Round(time.Millisecond))
	}

	// The same through the runtime: Dial, then the first publish.
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := kombu.Dial(cx, url)
	if err == nil {
		err = kombu.NewProducer(conn).Publish(cx, "x", kombu.WithRoutingKey("q"))
		_ = conn.Close()
	}
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("runtime: %v after %v, want an error within 2s", err, time.Since(start))
	}
	t.Logf("runtime: %v after %v", err, time.Since(start).Round(time.Millisecond))
}
