package virtual

import (
	"fmt"
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

// A literal pattern is matched by comparing strings: the same answers as
// its regexp, for the keys that differ from it in the places that matter.
func TestLiteralPatternsMatchAsTheirRegexp(t *testing.T) {
	keys := []string{"", "a", "a.b", "a.b-c", "under_score", "x.y.z", "A9", "a b", "é.x", "a*b"}
	routing := []string{"", "\n", "a", "a\n", "a\n\n", "\na", "a.b", "a.b\n", "axb", "a.b-c", "a.b-c\n", "under_score",
		"x.y.z", "x.y.zz", "A9", "a9", "a b", "é.x", "a*b", "aab"}
	literal := 0
	for _, k := range keys {
		p := KeyToPattern(k)
		lit, isLit := literalPattern(p)
		if !isLit {
			continue
		}
		literal++
		re, err := compilePyPattern(p)
		if err != nil {
			t.Fatal(err)
		}
		m := &pyMatcher{lit: lit, isLit: true}
		for _, rk := range routing {
			if got, want := m.match(rk), re.MatchString(rk); got != want {
				t.Errorf("pattern %q (literal %q), routing key %q: %t, regexp %t", p, lit, rk, got, want)
			}
		}
	}
	if literal < 5 {
		t.Errorf("only %d of the keys' patterns were read as literals", literal)
	}
	for _, p := range []string{`^a.b$`, `^a\d$`, `^a\Z`, `^a\0$`, `a$`, `^a`, `^a\$`, `^.*?$`} {
		if lit, ok := literalPattern(p); ok {
			t.Errorf("literalPattern(%q) = %q: it is not a literal", p, lit)
		}
	}
}

// TestWildcardMatchesRemembered: a wildcard pattern's answers are kept
// per routing key, bounded, and the same as the regexp's.
func TestWildcardMatchesRemembered(t *testing.T) {
	pattern := KeyToPattern("orders.*")
	for range 2 { // the second round answers from the cache
		for key, want := range map[string]bool{"orders.placed": true, "orders.a.b": true, "order.placed": false, "orders": false} {
			if got := MatchPattern(pattern, key); got != want {
				t.Errorf("MatchPattern(%q, %q) = %v, want %v", pattern, key, got, want)
			}
		}
	}
	patternsMu.RLock()
	m := patterns[pattern]
	patternsMu.RUnlock()
	m.mu.RLock()
	ok, known := m.seen["orders.placed"]
	m.mu.RUnlock()
	if !known || !ok {
		t.Fatalf("the answer for orders.placed is not remembered (%v, %v)", ok, known)
	}
	for i := range 3 * matchCacheSize {
		MatchPattern(pattern, fmt.Sprintf("orders.%d", i))
	}
	m.mu.RLock()
	n := len(m.seen)
	m.mu.RUnlock()
	if n > matchCacheSize {
		t.Fatalf("%d answers remembered, want at most %d", n, matchCacheSize)
	}
}
