package pytypes

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The msgpack methods are written from the specification; the library
// kombu-go's msgpack serializer uses must read and write the same bytes.
func TestMsgpackStrAsTheLibraryWritesIt(t *testing.T) {
	// Lengths at each header's bounds: fixstr, str 8, str 16, str 32.
	for _, n := range []int{1, 31, 32, 255, 256, 65535, 65536} {
		d := Decimal("1" + strings.Repeat("0", n-1))
		got, err := d.MarshalMsgpack()
		if err != nil {
			t.Fatal(err)
		}
		want, err := msgpack.Marshal(string(d))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d digits: header %x, the library writes %x", n, got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
		var back Decimal
		if err := msgpack.Unmarshal(want, &back); err != nil || back != d {
			t.Errorf("%d digits: read back %d digits, %v", n, len(back), err)
		}
	}
}

func TestMsgpackStructOfPythonTypes(t *testing.T) {
	type row struct {
		ID    UUID      `msgpack:"id"`
		Price Decimal   `msgpack:"price"`
		Day   Date      `msgpack:"day"`
		At    TimeOfDay `msgpack:"at"`
	}
	u, _ := ParseUUID("12345678-1234-5678-1234-567812345678")
	in := row{u, "1.50", Date{Year: 2024, Month: 1, Day: 2}, TimeOfDay{Hour: 1, Offset: 3600, HasOffset: true}}
	data, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := msgpack.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "12345678-1234-5678-1234-567812345678", "price": "1.50", "day": "2024-01-02", "at": "01:00:00+01:00"}
	if !reflect.DeepEqual(generic, want) {
		t.Fatalf("as Python sees it: %#v", generic)
	}
	var out row
	if err := msgpack.Unmarshal(data, &out); err != nil || out != in {
		t.Fatalf("round trip %+v %v", out, err)
	}
	// A UUID also reads from 16 bytes of bin (Python's uuid.bytes).
	bin, _ := msgpack.Marshal(u[:])
	var back UUID
	if err := msgpack.Unmarshal(bin, &back); err != nil || back != u {
		t.Fatalf("UUID from bin: %v %v", back, err)
	}
}

func TestMsgpackRefusesWhatIsNotText(t *testing.T) {
	for name, body := range map[string][]byte{
		"int":            {0x01},
		"array":          {0x91, 0xa1, 'x'},
		"truncated str8": {0xd9},
		"short payload":  {0xa5, '1', '2'},
		"trailing bytes": {0xa1, '1', '2'},
		"empty":          {},
	} {
		var u UUID
		if err := u.UnmarshalMsgpack(body); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// The other types read through UnmarshalText.
	var d Date
	if err := msgpack.Unmarshal([]byte{0xaa, '2', '0', '2', '3', '-', '0', '2', '-', '2', '9'}, &d); !errors.Is(err, ErrInvalid) {
		t.Errorf("2023-02-29: %v, want ErrInvalid", err)
	}
	var dec Decimal
	if err := msgpack.Unmarshal([]byte{0x01}, &dec); err == nil {
		t.Errorf("an int read into a Decimal: %q", dec)
	}
	if _, err := (Date{Year: 2023, Month: 2, Day: 29}).MarshalMsgpack(); !errors.Is(err, ErrInvalid) {
		t.Errorf("marshal 2023-02-29: %v, want ErrInvalid", err)
	}
}
