package virtual

import (
	"strings"
	"testing"
)

// parsePy reads what Python's json.loads reads and writes it back as
// json.dumps does; malformed JSON is an error that says where and what.
func TestParsePy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{}`},
		{`[]`, `[]`},
		{` { "a" : [1, 2, {"b": null}] , "c": "d" } `, `{"a": [1, 2, {"b": null}], "c": "d"}`},
		{`{"a": 1, "a": 2, "b": 3}`, `{"a": 2, "b": 3}`},
		{`[NaN, Infinity, -Infinity]`, `[NaN, Infinity, -Infinity]`},
	} {
		n, err := parsePy(tc.in)
		if err != nil {
			t.Errorf("parsePy(%s): %v", tc.in, err)
			continue
		}
		if got := string(n.appendTo(nil)); got != tc.want {
			t.Errorf("parsePy(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{`{"a": 1 "b": 2}`, `offset 8: expected ',' or '}'`},
		{`{"a": 1`, `offset 7: expected ',' or '}'`},
		{`[1 2]`, `offset 3: expected ',' or ']'`},
		{`[1,`, `offset 3`},
		{`{"a" 1}`, `expected ':'`},
		{`[1] x`, `extra data`},
	} {
		_, err := parsePy(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsePy(%s): error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}
