package virtual

import (
	"slices"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
)

func TestRoutes(t *testing.T) {
	bindings := []Binding{
		BindingFor(transport.ExchangeTopic, "a.*", "star"),
		BindingFor(transport.ExchangeTopic, "a.#", "hash"),
		BindingFor(transport.ExchangeTopic, "a.#", "hash"), // a duplicate row: one copy
		BindingFor(transport.ExchangeDirect, "a.b", "exact"),
		{RoutingKey: "x", Pattern: "^(unclosed$", Queue: "broken"}, // not a pattern Go reads: matches nothing
	}
	if bindings[0].Pattern != `^a\..*?[^\.]$` || bindings[3].Pattern != "" {
		t.Fatalf("patterns %q and %q", bindings[0].Pattern, bindings[3].Pattern)
	}
	r := NewRoutes(bindings)
	for _, c := range []struct {
		typ, key string
		want     []string
	}{
		// "exact", bound as to a direct exchange, has an empty pattern,
		// which re.match finds in every key.
		{transport.ExchangeTopic, "a.b", []string{"exact", "hash", "star"}},
		{transport.ExchangeTopic, "a.b.c", []string{"exact", "hash", "star"}}, // Kombu's "*" takes several words
		{transport.ExchangeTopic, "a", []string{"exact"}},                     // and "a.#" needs "a."
		{transport.ExchangeDirect, "a.b", []string{"exact"}},
		{"", "a.b", []string{"exact"}}, // an unknown type routes as direct
		{transport.ExchangeFanout, "anything", []string{"broken", "exact", "hash", "star"}},
	} {
		for range 2 { // the second time from memory
			if got := r.Lookup(c.typ, c.key); !slices.Equal(got, c.want) {
				t.Errorf("Lookup(%q, %q) = %q, want %q", c.typ, c.key, got, c.want)
			}
		}
	}
}
