package redis_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// A connection name with a space, which RabbitMQ shows as given, reaches
// Redis with the space replaced: CLIENT SETNAME refuses it, and every
// connection would fail.
func TestConnectionNameWithSpaces(t *testing.T) {
	e := newEnv(t)
	u, err := transport.Parse(e.url())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	name := "orders worker\n" + e.prefix
	c, err := kredis.Driver{}.Open(ctx, u, transport.Config{ConnectionName: name})
	if err != nil {
		t.Fatalf("open with connection name %q: %v", name, err)
	}
	defer c.Close()
	send(t, c, "q", "1")
	want := "orders-worker-" + e.prefix
	list, err := e.raw.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "name="+want+" ") {
		t.Errorf("CLIENT LIST has no connection named %q:\n%s", want, list)
	}
}
