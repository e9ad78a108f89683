package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

const sep = "\x06\x16"

// env is one test's view of the test Redis: a URL with a global_keyprefix of
// its own, so tests do not see each other's keys (or the unacked hash), and
// a plain go-redis client to inspect what the driver wrote.
type env struct {
	t      testing.TB
	base   string // the test Redis URL, without query
	prefix string
	raw    *goredis.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	base := brokertest.RedisURL(t)
	u, err := transport.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	db := 0
	if u.Path != "" {
		if db, err = strconv.Atoi(strings.TrimPrefix(u.Path, "/")); err != nil {
			t.Fatalf("test URL %s: %v", base, err)
		}
	}
	raw := goredis.NewClient(&goredis.Options{Addr: u.HostPort("127.0.0.1", 6379), DB: db, Username: u.User, Password: u.Password, Protocol: 2})
	var b [4]byte
	rand.Read(b[:])
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	e := &env{t: t, base: strings.SplitN(base, "?", 2)[0], prefix: "kgt:" + name + ":" + hex.EncodeToString(b[:]) + ":", raw: raw}
	t.Cleanup(func() {
		e.cleanup()
		raw.Close()
	})
	return e
}

// url returns the test URL with the test's key prefix and more options.
func (e *env) url(query ...string) string {
	q := append([]string{"global_keyprefix=" + e.prefix}, query...)
	return e.base + "?" + strings.Join(q, "&")
}

func (e *env) dial(query ...string) transport.Conn {
	e.t.Helper()
	return e.dialURL(e.url(query...))
}

func (e *env) dialURL(raw string) transport.Conn {
	e.t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		e.t.Fatalf("parse %q: %v", raw, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := kredis.Driver{}.Open(ctx, u, transport.Config{})
	if err != nil {
		e.t.Fatalf("open %q: %v", raw, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// keys lists the test's keys, without the prefix.
func (e *env) keys() []string {
	e.t.Helper()
	ks, err := e.raw.Keys(context.Background(), escapeGlob(e.prefix)+"*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for i, k := range ks {
		ks[i] = strings.TrimPrefix(k, e.prefix)
	}
	return ks
}

func (e *env) cleanup() {
	ctx := context.Background()
	ks, _ := e.raw.Keys(ctx, escapeGlob(e.prefix)+"*").Result()
	if len(ks) > 0 {
		e.raw.Del(ctx, ks...)
	}
}

func escapeGlob(s string) string {
	return regexp.MustCompile(`([*?\[\]\\])`).ReplaceAllString(s, `\$1`)
}

// list returns a list's items (with the prefix added to key), oldest first.
func (e *env) list(key string) []string {
	e.t.Helper()
	items, err := e.raw.LRange(context.Background(), e.prefix+key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	return items
}

func (e *env) unacked() map[string]string {
	e.t.Helper()
	m, err := e.raw.HGetAll(context.Background(), e.prefix+"unacked").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) unackedIndex() []goredis.Z {
	e.t.Helper()
	z, err := e.raw.ZRangeWithScores(context.Background(), e.prefix+"unacked_index", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return z
}

// send publishes each body to the queue through the default exchange.
func send(t testing.TB, c transport.Conn, queue string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte(b), Properties: transport.Properties{ContentType: "text/plain", ContentEncoding: "utf-8"}})
	}
}

func consume(t testing.TB, c transport.Conn, spec transport.ConsumeSpec) transport.Subscription {
	t.Helper()
	s, err := c.Consume(context.Background(), spec)
	if err != nil {
		t.Fatalf("consume %v: %v", spec.Queues, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		s.Cancel(ctx)
	})
	return s
}

func recv(t testing.TB, s transport.Subscription) *transport.Delivery {
	t.Helper()
	select {
	case d, ok := <-s.Deliveries():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
	}
	return nil
}

// recvBodies receives n deliveries and returns their bodies.
func recvBodies(t testing.TB, s transport.Subscription, n int) ([]string, []*transport.Delivery) {
	t.Helper()
	var bodies []string
	var ds []*transport.Delivery
	for range n {
		d := recv(t, s)
		bodies = append(bodies, string(d.Body))
		ds = append(ds, d)
	}
	return bodies, ds
}

// none checks that nothing arrives for a while.
func none(t testing.TB, s transport.Subscription, d time.Duration) {
	t.Helper()
	select {
	case got, ok := <-s.Deliveries():
		if ok {
			t.Fatalf("unexpected delivery %q", got.Body)
		}
	case <-time.After(d):
	}
}

func ack(t testing.TB, d *transport.Delivery) {
	t.Helper()
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

// envelope decodes a stored message.
func envelope(t testing.TB, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("envelope %q: %v", raw, err)
	}
	return m
}

func prop(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}
