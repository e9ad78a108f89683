package codec

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"
)

func TestYAMLSafeDumpBodies(t *testing.T) {
	// As Python's yaml.safe_dump({'id': 7, 'name': 'x', 'tags': ['a', 'b'],
	// 'price': 1.5, 'ok': True, 'none': None, 'raw': b'\x00\xff'}) writes it.
	body := "id: 7\nname: x\nnone: null\nok: true\nprice: 1.5\nraw: !!binary |\n  AP8=\ntags:\n- a\n- b\n"
	var got map[string]any
	if err := (YAML{}).Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": 7, "name": "x", "none": nil, "ok": true, "price": 1.5, "raw": "\x00\xff", "tags": []any{"a", "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	var typed struct {
		Raw  string    `yaml:"raw"` // yaml.v3 decodes !!binary into strings, not []byte
		When time.Time `yaml:"when"`
	}
	if err := (YAML{}).Unmarshal([]byte("raw: !!binary AP8=\nwhen: 2024-03-01 10:00:00\n"), &typed); err != nil {
		t.Fatal(err)
	}
	if string(typed.Raw) != "\x00\xff" || !typed.When.Equal(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("typed %+v", typed)
	}
	out, err := YAML{}.Marshal(map[string]any{"b": 2, "a": []string{"x"}})
	if err != nil || string(out) != "a:\n    - x\nb: 2\n" {
		t.Fatalf("marshal %q %v", out, err)
	}
}

func TestYAMLProtoGoesThroughProtojson(t *testing.T) {
	in := &apipb.Method{Name: "Get", ResponseTypeUrl: "u"}
	data, err := YAML{}.Marshal(in)
	if err != nil || !strings.Contains(string(data), "response_type_url: u") {
		t.Fatalf("%s %v", data, err)
	}
	var out apipb.Method
	if err := (YAML{}).Unmarshal(data, &out); err != nil || !proto.Equal(in, &out) {
		t.Fatalf("round trip %v %v", &out, err)
	}
}

func TestYAMLRefusesHostileBodies(t *testing.T) {
	bomb := `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`
	for name, body := range map[string]string{
		"billion laughs":   bomb,
		"python object":    "!!python/object/apply:os.system ['true']\n",
		"python name":      "x: !!python/name:os.system\n",
		"local tag":        "x: !custom 1\n",
		"two documents":    "a: 1\n---\nb: 2\n",
		"empty":            "",
		"invalid utf-8":    "a: \xff\n",
		"deep flow":        strings.Repeat("[", 20000),
		"deep block":       strings.Repeat("- ", 20000) + "x\n",
		"unterminated":     "a: \"x\n",
		"tab indentation":  "a:\n\t- b\n",
		"duplicate anchor": "a: *missing\n",
	} {
		var v any
		start := time.Now()
		err := YAML{}.Unmarshal([]byte(body), &v)
		if err == nil {
			t.Errorf("%s: decoded to %.100v", name, v)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
}

// Floats are written as YAML 1.1, which Python's yaml reads, needs them:
// "2" would be an int there, and "1e+21" a string. Bytes are !!binary.
func TestYAMLFloatsReadAsPythonFloats(t *testing.T) {
	out, err := YAML{}.Marshal(map[string]any{
		"whole": 2.0, "big": 1e21, "small": 1e-7, "half": 0.5, "inf": math.Inf(1), "ninf": math.Inf(-1), "nan": math.NaN(),
		"list": []any{3.0, 4}, "raw": []byte{0, 0xff},
	})
	want := "big: 1.0e+21\nhalf: 0.5\ninf: .inf\nlist:\n    - 3.0\n    - 4\nnan: .nan\nninf: -.inf\nraw: !!binary AP8=\nsmall: 1.0e-07\nwhole: 2.0\n"
	if err != nil || string(out) != want {
		t.Fatalf("marshal:\n%s(%v)\nwant\n%s", out, err, want)
	}
	var back map[string]any
	if err := (YAML{}).Unmarshal(out, &back); err != nil || back["whole"] != 2.0 || back["big"] != 1e21 {
		t.Errorf("read back %#v (%v)", back, err)
	}
}
