package pytypes

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestISOTimeParsing(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2024-03-01":                       Naive(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)),
		"2024-03-01T10":                    Naive(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)),
		"2024-03-01 10:20":                 Naive(time.Date(2024, 3, 1, 10, 20, 0, 0, time.UTC)),
		"2024-03-01T10:20:30.5":            Naive(time.Date(2024, 3, 1, 10, 20, 30, 500_000_000, time.UTC)),
		"2024-03-01T10:20:30.123456789Z":   time.Date(2024, 3, 1, 10, 20, 30, 123456789, time.UTC),
		"2024-03-01T10:20:30+00:00":        time.Date(2024, 3, 1, 10, 20, 30, 0, time.UTC),
		"2024-03-01T10:20:30-07:00":        time.Date(2024, 3, 1, 17, 20, 30, 0, time.UTC),
		"2024-03-01T10:20:30+01:00:07.5":   time.Date(2024, 3, 1, 9, 20, 23, 0, time.UTC),
		"2024-03-01T10:20:30.000001+05:45": time.Date(2024, 3, 1, 4, 35, 30, 1000, time.UTC),
	} {
		got, err := ParseISOTime(in)
		if err != nil || !got.Equal(want) || IsNaive(got) != IsNaive(want) {
			t.Errorf("ParseISOTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2024", "2024-3-1", "2024-03-01T", "2024-03-01X10:00", "2024-13-01",
		"2024-03-01T10:00:60", "2024-03-01T10:00:00+24:00", "2024-03-01T10:00:00.", "2024-03-01T10:00:00.1234567890",
		"2024-03-01T10:00:00 ", "0000-01-01"} {
		if got, err := ParseISOTime(in); err == nil {
			t.Errorf("ParseISOTime(%q) = %v, want an error", in, got)
		}
	}
}

func TestKombuTypesText(t *testing.T) {
	u, err := ParseUUID("urn:uuid:{12345678-1234-5678-1234-567812345678}")
	if err != nil || u.String() != "12345678-1234-5678-1234-567812345678" || u.Version() != 5 {
		t.Fatalf("ParseUUID: %v %v", u, err)
	}
	for _, bad := range []string{"", "1234", strings.Repeat("g", 32)} {
		if _, err := ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) succeeded", bad)
		}
	}
	for _, ok := range []string{"0", "-0", "+1.5", ".5", "5.", "1e10", "1E-10", "Infinity", "-inf", "NaN", "nan12", "sNaN"} {
		if _, err := ParseDecimal(ok); err != nil {
			t.Errorf("ParseDecimal(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "-", "1e", "e5", "1.2.3", "0x10", "1_000", " 1", "Infinit"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) succeeded", bad)
		}
	}
	d, err := ParseDate("2024-03-01T23:59:59+05:00")
	if err != nil || d != (Date{Year: 2024, Month: 3, Day: 1}) || d.String() != "2024-03-01" {
		t.Fatalf("ParseDate: %v %v", d, err)
	}
	tod, err := ParseTimeOfDay("07:08:09.5Z")
	if err != nil || tod != (TimeOfDay{7, 8, 9, 500_000_000, 0, true}) || tod.String() != "07:08:09.500000+00:00" {
		t.Fatalf("ParseTimeOfDay: %+v %v", tod, err)
	}
	now := time.Date(2024, 3, 1, 10, 0, 0, 0, time.FixedZone("", 3600))
	if DateOf(now) != (Date{Year: 2024, Month: 3, Day: 1}) || TimeOfDayOf(now) != (TimeOfDay{Hour: 10, Offset: 3600, HasOffset: true}) {
		t.Fatal("DateOf / TimeOfDayOf")
	}
	// Text forms, used by YAML, msgpack and map keys.
	for _, v := range []interface {
		MarshalText() ([]byte, error)
	}{Date{Year: 2024, Month: 3, Day: 1}, TimeOfDay{Hour: 1}, Decimal("1.5"), u} {
		if b, err := v.MarshalText(); err != nil || len(b) == 0 {
			t.Errorf("%T.MarshalText: %q %v", v, b, err)
		}
	}
}

// Every parse failure is ErrInvalid, so callers can tell bad input.
func TestParseErrorsAreErrInvalid(t *testing.T) {
	for name, err := range map[string]error{
		"ParseISOTime":   func() error { _, err := ParseISOTime("2024-02-30"); return err }(),
		"ParseDate":      func() error { _, err := ParseDate("2024-13-01"); return err }(),
		"ParseTimeOfDay": func() error { _, err := ParseTimeOfDay("25:00"); return err }(),
		"ParseDecimal":   func() error { _, err := ParseDecimal("1.2.3"); return err }(),
		"ParseUUID":      func() error { _, err := ParseUUID("123"); return err }(),
		"AppendISOTime":  func() error { _, err := AppendISOTime(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); return err }(),
		"MarshalText":    func() error { _, err := Date{Year: 2023, Month: 2, Day: 29}.MarshalText(); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
