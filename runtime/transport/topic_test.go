package transport

import "testing"

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		binding, key string
		want         bool
	}{
		{"#", "", true},
		{"#", "a", true},
		{"#", "a.b.c", true},
		{"#.#", "", true},
		// The empty key is zero words (RabbitMQ's split_topic_key_binary(<<>>)
		// is []), so only "" and patterns of "#" match it; "*" needs a word.
		{"", "", true},
		{"", "a", false},
		{"*", "", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"*", ".", false}, // two empty words
		{"*.*", ".", true},
		{"a.#", "a", true},
		{"a.#", "a.b", true},
		{"a.#", "a.b.c", true},
		{"a.#", "b.a", false},
		{"a.#", "ab", false},
		{"a.#", "", false},
		{"*.b", ".b", true}, // the empty first word matches "*"
		{"*.b", "b", false},
		{"*.b", "a.b", true},
		{"a.*", "a", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*", "a.", true}, // "a." is "a" and an empty word
		{"#.a.#", "a", true},
		{"#.a.#", "x.a.y", true},
		{"#.a.#", "x.y.a", true},
		{"#.a.#", "x.y", false},
		{"a.*.b", "a..b", true},
		{"a.*.b", "a.b", false},
		{"a..b", "a..b", true},
		{"a..b", "a.b", false},
		{"a.#.b", "a.b", true},
		{"a.#.b", "a.x.y.b", true},
		{"a.#.b", "a.x.y.c", false},
		{"#.b", "b", true},
		{"#.b", "a.b", true},
		{"#.b", "ab", false},
		{"a.b", "a.b", true},
		{"a.b", "a.b.c", false},
		{"a.b", "a", false},
	}
	for _, tt := range tests {
		if got := MatchTopic(tt.binding, tt.key); got != tt.want {
			t.Errorf("binding %q, routing key %q: match = %v, want %v", tt.binding, tt.key, got, tt.want)
		}
	}
}

func TestTopicMatchDoesNotAllocate(t *testing.T) {
	p := CompileTopic("shop.#.placed")
	if n := testing.AllocsPerRun(100, func() { p.Match("shop.eu.order.placed") }); n != 0 {
		t.Fatalf("Match allocates %v times per call", n)
	}
}
