package pytypes

import (
	"testing"
	"time"
)

// `go test` runs the seeds (f.Add and testdata/fuzz/<name>/) as regression
// tests; `go test -run '^$' -fuzz '^FuzzISOTime$' -fuzztime 60s
// ./runtime/pytypes/` fuzzes.

// FuzzISOTime parses ISO 8601 times as the datetime envelope carries them.
func FuzzISOTime(f *testing.F) {
	for _, s := range []string{"2024-03-01", "2024-03-01T10:00:00.123456+05:30", "2024-03-01 10:00Z",
		"9999-12-31T23:59:59.999999-23:59:59.999999", "0001-01-01T00:00:00+00:00", "2024-02-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseISOTime(s)
		if err != nil {
			return
		}
		b, err := AppendISOTime(nil, tm)
		if err != nil {
			return // an offset moved it outside years 1 to 9999
		}
		back, err := ParseISOTime(string(b))
		if err != nil || !back.Equal(tm.Truncate(time.Microsecond)) || IsNaive(back) != IsNaive(tm) {
			t.Fatalf("%q → %v → %s → %v, %v", s, tm, b, back, err)
		}
	})
}
