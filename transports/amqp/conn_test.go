package amqp_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
)

// hostPort returns the test broker's host:port.
func hostPort(t *testing.T) string {
	u, err := url.Parse(brokertest.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		return u.Hostname() + ":5672"
	}
	return u.Host
}

func TestRegisteredSchemes(t *testing.T) {
	for _, s := range []string{"amqp", "amqps", "pyamqp"} {
		if _, ok := transport.Lookup(s); !ok {
			t.Errorf("scheme %q not registered", s)
		}
	}
}

func TestOpenDefaultsToGuestAndRootVhost(t *testing.T) {
	t.Parallel()
	hp := hostPort(t)
	// No user, no password, no path: guest/guest on "/". The path forms
	// "/" and "" name "/" too, and pyamqp is Kombu's alias for amqp.
	for _, raw := range []string{"amqp://" + hp, "amqp://" + hp + "/", "amqp://" + hp + "//", "pyamqp://" + hp + "//"} {
		c, err := tryOpen(t, transport.Config{}, raw)
		if err != nil {
			t.Errorf("open %s: %v", raw, err)
			continue
		}
		q := queue(t, c, "defaults", nil)
		toQueue(t, c, q, "hello")
		if got := string(get(t, c, q).Body); got != "hello" {
			t.Errorf("%s: got %q", raw, got)
		}
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

func TestVhostFromPath(t *testing.T) {
	t.Parallel()
	hp := hostPort(t)
	vhost := "/" + name(t, "vhost") // a vhost starting with "/", as "amqp://h//foo" names
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", vhost) })
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

	c := open(t, "amqp://guest:guest@"+hp+"/"+vhost)
	q := name(t, "q")
	if _, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, AutoDelete: true}); err != nil {
		t.Fatalf("declare in %s: %v", vhost, err)
	}
	out := string(rabbitmqctl(t, "list_queues", "-p", vhost, "name", "-q"))
	if !strings.Contains(out, q) {
		t.Errorf("queue %q not in vhost %q: list_queues says %q", q, vhost, out)
	}
	// "amqp://h/foo" names "foo", which does not exist.
	missing := strings.TrimPrefix(vhost, "/")
	_, err := tryOpen(t, transport.Config{}, "amqp://guest:guest@"+hp+"/"+missing)
	if err == nil || !strings.Contains(err.Error(), "vhost "+missing+" not found") {
		t.Errorf("open vhost %q: got %v, want the broker saying it is not found", missing, err)
	}
}

func TestUnknownQueryKey(t *testing.T) {
	for _, raw := range []string{"amqp://h//?foo=1", "amqp://h//?heartbeat=x", "amqps://h//?ssl_cert_reqs=maybe"} {
		u, err := transport.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := transport.Lookup(u.Scheme)
		_, err = d.Open(context.Background(), u, transport.Config{})
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: got %v, want ErrInvalidURL", raw, err)
		}
	}
	u, _ := transport.Parse("amqp://h//?foo=1")
	d, _ := transport.Lookup("amqp")
	_, err := d.Open(context.Background(), u, transport.Config{})
	if err == nil || !strings.Contains(err.Error(), `unknown option "foo"`) {
		t.Errorf("got %v, want it to name the key foo", err)
	}
}

func TestWrongPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const secret = "Sup3rSecretPw"
	_, err := tryOpen(t, transport.Config{}, "amqp://guest:"+secret+"@"+hostPort(t)+"//")
	if err == nil {
		t.Fatal("open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error shows the password: %v", err)
	}
	// RabbitMQ drops the socket after a failed login, so the reason is
	// amqp091-go's ErrCredentials (code 403).
	if !strings.Contains(err.Error(), "(403)") || !strings.Contains(err.Error(), "amqp://guest:**@") {
		t.Errorf("error %q should give the reason and the masked URL", err)
	}
}

func TestConnectionNameVisible(t *testing.T) {
	t.Parallel()
	hp := hostPort(t)
	fromURL := name(t, "url")
	c := open(t, "amqp://"+hp+"//?connection_name="+fromURL+"&heartbeat=5&connect_timeout=3")
	connectionPID(t, fromURL)

	// Config wins over the URL.
	fromCfg := name(t, "cfg")
	c2, err := tryOpen(t, transport.Config{ConnectionName: fromCfg}, "amqp://"+hp+"//?connection_name=ignored")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	connectionPID(t, fromCfg)
	_ = c
}

func TestHeartbeatNegotiated(t *testing.T) {
	t.Parallel()
	n := name(t, "hb")
	open(t, "amqp://"+hostPort(t)+"//?connection_name="+n+"&heartbeat=7")
	connectionPID(t, n)
	out := string(rabbitmqctl(t, "list_connections", "timeout", "client_properties", "-q"))
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, n) {
			if got, _, _ := strings.Cut(line, "\t"); got != "7" {
				t.Errorf("heartbeat timeout = %q, want 7", got)
			}
			return
		}
	}
	t.Errorf("connection not listed: %s", out)
}

func TestCloseIdempotentThenErrClosed(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err after Close = %v, want nil", err)
	}
	ctx := ctxT(t)
	checks := map[string]error{
		"publish":             c.Publish(ctx, &transport.Publishing{RoutingKey: q, Confirm: true}),
		"publish unconfirmed": c.Publish(ctx, &transport.Publishing{RoutingKey: q}),
		"declare exchange":    c.DeclareExchange(ctx, transport.Exchange{Name: "x", Type: "direct"}),
		"bind":                c.Bind(ctx, transport.Binding{Source: "amq.direct", Destination: q}),
	}
	_, checks["declare queue"] = c.DeclareQueue(ctx, transport.Queue{Name: q})
	_, checks["get"] = c.Get(ctx, q, true)
	_, checks["consume"] = c.Consume(ctx, transport.ConsumeSpec{Queues: []string{q}})
	_, checks["purge"] = c.PurgeQueue(ctx, q)
	for op, err := range checks {
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	if ds := drainSub(t, sub); len(ds) != 0 {
		t.Errorf("got %d deliveries", len(ds))
	}
	if !errors.Is(sub.Err(), transport.ErrClosed) {
		t.Errorf("subscription Err = %v, want ErrClosed", sub.Err())
	}
}

func TestConnectionKilledByBroker(t *testing.T) {
	t.Parallel()
	n := name(t, "killed")
	c := open(t, "amqp://"+hostPort(t)+"//?connection_name="+n)
	q := queue(t, c, "q", nil)
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}})
	if err != nil {
		t.Fatal(err)
	}
	rabbitmqctl(t, "close_connection", connectionPID(t, n), "test kills it")
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed after the broker closed the connection")
	}
	if err := c.Err(); !errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), "test kills it") {
		t.Errorf("Err = %v, want ErrClosed with the broker's reason", err)
	}
	if err := c.Publish(ctxT(t), &transport.Publishing{RoutingKey: q, Confirm: true}); !errors.Is(err, transport.ErrClosed) ||
		!strings.Contains(err.Error(), "test kills it") {
		t.Errorf("publish after loss: %v, want ErrClosed with the reason", err)
	}
	drainSub(t, sub)
	if err := sub.Err(); !errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), "test kills it") {
		t.Errorf("subscription Err = %v, want ErrClosed with the reason", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close after loss: %v", err)
	}
	if err := c.Err(); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Err after loss and Close = %v, want it to keep the reason", err)
	}
}

func TestContextEndedBeforeOpen(t *testing.T) {
	u, _ := transport.Parse(brokertest.AMQPURL(t))
	d, _ := transport.Lookup("amqp")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Open(ctx, u, transport.Config{}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
