// Package exampletest runs the examples' programs on real brokers in tests.
package exampletest

import (
	"context"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Purge empties the named queues of the given topologies on the broker at
// url, so that a message left by an earlier run (or by `make demo` against
// the same broker) cannot change what an example prints.
func Purge(t *testing.T, url string, topologies ...kombu.Topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, topo := range topologies {
		if err := topo.Declare(ctx, conn); err != nil {
			t.Fatal(err)
		}
		for _, q := range topo.Queues {
			if q.Name == "" {
				continue
			}
			if _, err := q.Purge(ctx, conn); err != nil {
				t.Fatal(err)
			}
		}
	}
}
