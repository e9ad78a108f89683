package kombu_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

func TestDialUnknownSchemeNamesThePackage(t *testing.T) {
	// librabbitmq is Kombu's name for the AMQP transport; no driver registers
	// it, whatever this test binary imports.
	_, err := kombu.Dial(context.Background(), "librabbitmq://guest:secret@localhost//")
	if !errors.Is(err, kombu.ErrUnknownScheme) {
		t.Fatalf("got %v, want ErrUnknownScheme", err)
	}
	if !strings.Contains(err.Error(), `import _ "github.com/kombu-go/kombu/transports/amqp"`) {
		t.Errorf("error %q does not say what to import", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q leaks the password", err)
	}
	_, err = kombu.Dial(context.Background(), "carrier-pigeon://coop")
	if !errors.Is(err, kombu.ErrUnknownScheme) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("got %v, want ErrUnknownScheme listing the registered schemes", err)
	}
}

func TestDialBadURL(t *testing.T) {
	_, err := kombu.Dial(context.Background(), "amqp://user:secret@host:notaport//")
	var ue *kombu.URLError
	if !errors.Is(err, kombu.ErrInvalidURL) || !errors.As(err, &ue) {
		t.Fatalf("got %v, want a *URLError", err)
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(ue.Reason, "port") {
		t.Errorf("error %q: want the reason, and no password", err)
	}
}

// The three URLs a new user got wrong each say what is wrong, and show
// the URL (with its password masked); an unknown scheme names the nearest
// one.
func TestDialURLMistakes(t *testing.T) {
	for raw, want := range map[string]string{
		"localhost:5672":                      `"localhost:5672": missing scheme: "localhost:5672" is a host and port`,
		"amqp//guest:guest@localhost:5672//":  `"amqp//guest:**@localhost:5672//": missing ':' between the scheme and "//": write amqp://`,
		"amqp:/guest@localhost//":             `"amqp:/guest@localhost//": "amqp:/" has one slash after the scheme: write amqp://`,
		"rabbitmq://guest:secret@localhost//": `unknown transport scheme "rabbitmq": did you mean "amqp"? (registered: `,
		"ampq://guest:secret@localhost//":     `did you mean "amqp"`,
		"memroy://":                           `unknown transport scheme "memroy": did you mean "memory"? (registered: `,
		// This test binary does not import the Redis transport.
		"redis-sentinel://h:26379?master_name=m": `did you mean "sentinel", with import _ "github.com/kombu-go/kombu/transports/redis" to register it?`,
		// Nor the filesystem transport.
		"filesystem:///var/spool/kombu": `import _ "github.com/kombu-go/kombu/transports/filesystem"`,
		"fs:///var/spool/kombu":         `did you mean "filesystem", with import _ "github.com/kombu-go/kombu/transports/filesystem" to register it?`,
	} {
		_, err := kombu.Dial(context.Background(), raw)
		if err == nil {
			t.Errorf("Dial(%q) succeeded", raw)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Dial(%q):\n got %v\nwant it to contain %s", raw, err, want)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), ";") {
			t.Errorf("Dial(%q): %v: shows the password or speaks of ';'", raw, err)
		}
		wantErr := kombu.ErrInvalidURL
		if strings.Contains(raw, "://") {
			wantErr = kombu.ErrUnknownScheme
		}
		if !errors.Is(err, wantErr) {
			t.Errorf("Dial(%q): %v is not %v", raw, err, wantErr)
		}
	}
}

func TestURLIsMasked(t *testing.T) {
	conn, err := kombu.Dial(context.Background(), "memory://user:secret@/masked")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.URL(); got != "memory://user:**@/masked" {
		t.Fatalf("URL() = %q", got)
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	conn := dial(t)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-conn.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	err := kombu.NewProducer(conn).Publish(context.Background(), "x", kombu.WithRoutingKey("q"))
	if !errors.Is(err, kombu.ErrClosed) {
		t.Fatalf("publish after Close: got %v, want ErrClosed", err)
	}
}

func TestMandatoryPublishToNowhere(t *testing.T) {
	conn := dial(t)
	err := kombu.NewProducer(conn).Publish(ctxT(t), "x", kombu.WithRoutingKey("no-such-queue"), kombu.WithMandatory())
	if !errors.Is(err, kombu.ErrUnroutable) {
		t.Fatalf("got %v, want ErrUnroutable", err)
	}
	var oe *kombu.OperationalError
	if !errors.As(err, &oe) || !strings.Contains(oe.Op, `"no-such-queue"`) {
		t.Fatalf("got %v, want an OperationalError naming the routing key", err)
	}
}

func TestPublishPropertiesAndGet(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	q := kombu.Queue{Name: "props", MaxPriority: 9}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, conn); !errors.Is(err, kombu.ErrEmpty) {
		t.Fatalf("Get on an empty queue: got %v, want ErrEmpty", err)
	}
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := kombu.NewProducer(conn, kombu.WithHeaders(map[string]any{"origin": "test"}))
	err := p.Publish(ctx, map[string]string{"a": "b"},
		kombu.WithRoutingKey("props"), kombu.WithPriority(5), kombu.WithHeaders(map[string]any{"x": 1}),
		kombu.WithCorrelationID("c1"), kombu.WithReplyTo("replies"), kombu.WithMessageID("m1"),
		kombu.WithTimestamp(ts), kombu.WithType("t"), kombu.WithAppID("app"), kombu.WithCompression("zlib"),
		kombu.WithExpiration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := q.Get(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	pr := msg.Properties
	if pr.ContentType != "application/json" || pr.ContentEncoding != "utf-8" || pr.DeliveryMode != 2 ||
		pr.Priority != 5 || pr.CorrelationID != "c1" || pr.ReplyTo != "replies" || pr.MessageID != "m1" ||
		!pr.Timestamp.Equal(ts) || pr.Type != "t" || pr.AppID != "app" || pr.Expiration != time.Minute {
		t.Errorf("properties %+v", pr)
	}
	if msg.Headers["origin"] != "test" || msg.Headers["x"] != 1 || msg.Headers["compression"] != "application/x-gzip" {
		t.Errorf("headers %v", msg.Headers)
	}
	var body map[string]string
	if err := msg.Decode(&body); err != nil || body["a"] != "b" {
		t.Fatalf("decoded %v, %v", body, err)
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	// The producer's default headers were not changed by the per-call ones.
	mustPublish(t, p.Publish(ctx, "y", kombu.WithRoutingKey("props")))
	msg, err = q.Get(ctx, conn, kombu.WithAutoAck())
	if err != nil {
		t.Fatal(err)
	}
	if _, leaked := msg.Headers["x"]; leaked || msg.Headers["origin"] != "test" {
		t.Fatalf("second message headers %v", msg.Headers)
	}
}

func TestUnsupportedQueueOptionsAreRefused(t *testing.T) {
	conn := dial(t)
	_, err := kombu.Queue{Name: "qq", Type: kombu.QueueQuorum}.Declare(ctxT(t), conn)
	if !errors.Is(err, kombu.ErrNotSupported) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("quorum queue on memory://: got %v, want ErrNotSupported naming it", err)
	}
	_, err = kombu.Queue{Name: "bad", Type: kombu.QueueQuorum, Exclusive: true}.Declare(ctxT(t), conn)
	if err == nil || !strings.Contains(err.Error(), "not exclusive") {
		t.Fatalf("exclusive quorum queue: got %v", err)
	}
}

func TestRedeclareWithOtherSettingsFails(t *testing.T) {
	url := brokerURL(t)
	conn := dialURL(t, url)
	ctx := ctxT(t)
	if err := (kombu.Exchange{Name: "ex", Type: kombu.ExchangeTopic}).Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// A second connection to the same broker has its own declared-entity
	// cache, so it really asks the broker.
	conn2 := dialURL(t, url)
	err := kombu.Exchange{Name: "ex", Type: kombu.ExchangeFanout}.Declare(ctx, conn2)
	if !errors.Is(err, kombu.ErrPrecondition) || !strings.Contains(err.Error(), "ex") {
		t.Fatalf("got %v, want ErrPrecondition naming the exchange", err)
	}
}

func TestProducerWithLayersDefaults(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	for _, q := range []string{"a", "b"} {
		if _, err := (kombu.Queue{Name: q}).Declare(ctx, conn); err != nil {
			t.Fatal(err)
		}
	}
	base := kombu.NewProducer(conn, kombu.WithRoutingKey("a"), kombu.WithHeaders(map[string]any{"from": "base"}))
	derived := base.With(kombu.WithRoutingKey("b"), kombu.WithHeaders(map[string]any{"route": "b"}), kombu.WithPriority(3))
	mustPublish(t, derived.Publish(ctx, "1"))
	mustPublish(t, base.Publish(ctx, "2"))
	_, mb := getBody(t, conn, "b")
	if mb.Headers["from"] != "base" || mb.Headers["route"] != "b" || mb.Properties.Priority != 3 {
		t.Fatalf("derived producer's message: headers %v, priority %d", mb.Headers, mb.Properties.Priority)
	}
	_, ma := getBody(t, conn, "a")
	if _, leaked := ma.Headers["route"]; leaked || ma.Properties.Priority != 0 {
		t.Fatalf("With changed the base producer: headers %v, priority %d", ma.Headers, ma.Properties.Priority)
	}
}

func TestMaxBodySizeBoundsPublishAndReceive(t *testing.T) {
	url := brokerURL(t)
	small, err := kombu.Dial(context.Background(), url, kombu.WithMaxBodySize(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	big := dialURL(t, url)
	ctx := ctxT(t)
	q := kombu.Queue{Name: "bodies"}
	if _, err := q.Declare(ctx, big); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(small, kombu.WithRoutingKey("bodies")).Publish(ctx, make([]byte, 2048)); !errors.Is(err, kombu.ErrLimitExceeded) {
		t.Fatalf("publishing 2 KiB with a 1 KiB limit: %v, want ErrLimitExceeded", err)
	}
	mustPublish(t, kombu.NewProducer(big, kombu.WithRoutingKey("bodies")).Publish(ctx, make([]byte, 2048)))
	if _, err := q.Get(ctx, small); !errors.Is(err, kombu.ErrLimitExceeded) || !errors.Is(err, kombu.ErrDecode) {
		t.Fatalf("receiving 2 KiB with a 1 KiB limit: %v, want ErrDecode and ErrLimitExceeded", err)
	}
}
