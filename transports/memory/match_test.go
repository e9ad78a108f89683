package memory

import (
	"strings"
	"testing"
)

func TestHeadersMatch(t *testing.T) {
	tests := []struct {
		name    string
		binding map[string]any
		headers map[string]any
		want    bool
	}{
		{"all by default", map[string]any{"a": 1, "b": "x"}, map[string]any{"a": 1, "b": "x", "c": 3}, true},
		{"all needs every one", map[string]any{"a": 1, "b": "x"}, map[string]any{"a": 1}, false},
		{"all with a wrong value", map[string]any{"x-match": "all", "a": 1, "b": "x"}, map[string]any{"a": 1, "b": "y"}, false},
		{"numbers across types", map[string]any{"a": 1, "b": uint8(7), "c": 2.0}, map[string]any{"a": int64(1), "b": int32(7), "c": 2}, true},
		{"different numbers", map[string]any{"a": 5}, map[string]any{"a": 5.5}, false},
		{"number is not a string", map[string]any{"a": 5}, map[string]any{"a": "5"}, false},
		{"string equals bytes", map[string]any{"a": "x"}, map[string]any{"a": []byte("x")}, true},
		{"any with one", map[string]any{"x-match": "any", "a": 1, "b": 2}, map[string]any{"b": 2}, true},
		{"any with none", map[string]any{"x-match": "any", "a": 1, "b": 2}, map[string]any{"a": 2, "c": 1}, false},
		{"empty all matches", map[string]any{}, map[string]any{"a": 1}, true},
		{"empty any matches nothing", map[string]any{"x-match": "any"}, map[string]any{"a": 1}, false},
		{"x- ignored with all", map[string]any{"x-match": "all", "x-foo": "bar"}, nil, true},
		{"x- ignored with any", map[string]any{"x-match": "any", "x-foo": "bar", "a": 1}, map[string]any{"x-foo": "bar"}, false},
		{"all-with-x compares x-", map[string]any{"x-match": "all-with-x", "x-foo": "bar"}, nil, false},
		{"all-with-x matches x-", map[string]any{"x-match": "all-with-x", "x-foo": "bar"}, map[string]any{"x-foo": "bar"}, true},
		{"any-with-x", map[string]any{"x-match": "any-with-x", "x-foo": 1, "a": 2}, map[string]any{"x-foo": int32(1)}, true},
		{"void value: presence", map[string]any{"a": nil}, map[string]any{"a": "anything"}, true},
		{"void value: absence", map[string]any{"a": nil}, map[string]any{"b": 1}, false},
		{"nested table", map[string]any{"a": map[string]any{"n": 1}}, map[string]any{"a": map[string]any{"n": int64(1)}}, true},
		{"nested array", map[string]any{"a": []any{1, "x"}}, map[string]any{"a": []any{int16(1), "x"}}, true},
	}
	for _, tt := range tests {
		h, err := compileHeaders(tt.binding)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := h.match(tt.headers); got != tt.want {
			t.Errorf("%s: binding %v, headers %v: match = %v, want %v", tt.name, tt.binding, tt.headers, got, tt.want)
		}
	}
}

func TestHeadersInvalidXMatch(t *testing.T) {
	for _, v := range []any{"some", 1, nil} {
		_, err := compileHeaders(map[string]any{"x-match": v})
		if err == nil || !strings.Contains(err.Error(), "invalid x-match") {
			t.Errorf("x-match %#v: err = %v, want invalid x-match", v, err)
		}
	}
}
