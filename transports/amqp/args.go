package amqp

import (
	"fmt"
	"math"
	"reflect"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

// toTable converts arguments or message headers to an AMQP field table. It
// is the one place Go values become AMQP field values:
//
//   - every integer type becomes int64 (a "long"); amqp091-go would write a
//     Go int as a 32-bit "signedint" and truncate it, and rejects uint and
//     uint64 outright. RabbitMQ treats its integer types as equivalent when
//     comparing declarations.
//   - time.Duration becomes int64 milliseconds, as x- arguments take them.
//   - float32 becomes float64; bool, string, []byte, time.Time (whole
//     seconds), amqp091 Decimal and nil are kept.
//   - []string, []any and other slices become field arrays, and maps with
//     string keys (map[string]any, amqp091 Table, map[string]string...)
//     nested tables, converted recursively.
//
// Anything else (structs, pointers, channels, uint64 values above
// math.MaxInt64) is an error naming the key and wrapping
// transport.ErrNotSupported. A table whose values need no
// conversion is returned as it is, without copying.
func toTable(m map[string]any) (amqp.Table, error) {
	if m == nil {
		return nil, nil
	}
	if tableReady(m) {
		return amqp.Table(m), nil
	}
	t := make(amqp.Table, len(m))
	for k, v := range m {
		f, err := toField(v)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		t[k] = f
	}
	return t, nil
}

// tableReady reports whether every value in m is already a type amqp091-go
// writes faithfully.
func tableReady(m map[string]any) bool {
	for _, v := range m {
		if !fieldReady(v) {
			return false
		}
	}
	return true
}

func fieldReady(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, []byte, int64, float64, time.Time, amqp.Decimal:
		return true
	case amqp.Table:
		return tableReady(v)
	case []any:
		for _, e := range v {
			if !fieldReady(e) {
				return false
			}
		}
		return true
	}
	return false
}

func toField(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, []byte, int64, float64, time.Time, amqp.Decimal:
		return v, nil
	case time.Duration:
		return v.Milliseconds(), nil
	case int:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case uint:
		return uintField(uint64(v))
	case uint8:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint64:
		return uintField(v)
	case float32:
		return float64(v), nil
	case amqp.Table:
		return toTable(v)
	case map[string]any:
		return toTable(v)
	case []any:
		return toArray(len(v), func(i int) any { return v[i] })
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out, nil
	}
	return reflectField(v)
}

func uintField(n uint64) (any, error) {
	if n > math.MaxInt64 {
		return nil, fmt.Errorf("%d does not fit the signed 64-bit integers AMQP tables hold: %w", n, transport.ErrNotSupported)
	}
	return int64(n), nil
}

func toArray(n int, at func(int) any) (any, error) {
	out := make([]any, n)
	for i := range n {
		f, err := toField(at(i))
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = f
	}
	return out, nil
}

// reflectField converts named types (type Level int, []int, map[string]string
// and the like) by their kind.
func reflectField(v any) (any, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintField(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes(), nil
		}
		return toArray(rv.Len(), func(i int) any { return rv.Index(i).Interface() })
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		t := make(amqp.Table, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			f, err := toField(iter.Value().Interface())
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", k, err)
			}
			t[k] = f
		}
		return t, nil
	}
	return nil, fmt.Errorf("a %T cannot be sent in an AMQP table (want a string, number, bool, []byte, time.Time, time.Duration, slice or map with string keys): %w",
		v, transport.ErrNotSupported)
}

// fromTable turns a received table into plain Go maps, in place: nested
// tables become map[string]any, so that callers never see amqp091 types
// other than Decimal.
func fromTable(t amqp.Table) map[string]any {
	if t == nil {
		return nil
	}
	for k, v := range t {
		if nv, changed := fromField(v); changed {
			t[k] = nv
		}
	}
	return map[string]any(t)
}

func fromField(v any) (any, bool) {
	switch v := v.(type) {
	case amqp.Table:
		return fromTable(v), true
	case []any:
		for i, e := range v {
			if ne, changed := fromField(e); changed {
				v[i] = ne
			}
		}
	}
	return v, false
}
