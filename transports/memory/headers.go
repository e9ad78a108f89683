package memory

import (
	"bytes"
	"fmt"
	"reflect"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// cloneHeaders copies message headers deeply: the publisher may reuse what
// it passed once Publish returns, and a consumer owns its delivery, so
// neither may reach what the broker keeps. Values keep their Go types. A
// value no transport can carry (a struct, a pointer, a channel...) is
// refused with ErrNotSupported, as the AMQP and Redis transports refuse it,
// so that code tested here fails here too.
func cloneHeaders(h map[string]any) (map[string]any, error) {
	if h == nil {
		return nil, nil
	}
	out := make(map[string]any, len(h))
	for k, v := range h {
		c, err := cloneValue(v)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		out[k] = c
	}
	return out, nil
}

// copyHeaders copies headers that cloneHeaders accepted before.
func copyHeaders(h map[string]any) map[string]any {
	out, _ := cloneHeaders(h)
	return out
}

func cloneValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, time.Time, time.Duration:
		return v, nil
	case []byte:
		return bytes.Clone(v), nil
	case map[string]any:
		return cloneHeaders(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := cloneValue(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	}
	return cloneReflect(reflect.ValueOf(v))
}

// cloneReflect copies the other types a header may hold by their kind:
// named scalars, other slices and arrays, maps with string keys.
func cloneReflect(rv reflect.Value) (any, error) {
	switch rv.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Interface(), nil
	case reflect.Slice, reflect.Array:
		out := reflect.New(rv.Type()).Elem()
		if rv.Kind() == reflect.Slice {
			if rv.IsNil() {
				return rv.Interface(), nil
			}
			out = reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
		}
		for i := range rv.Len() {
			if err := cloneInto(out.Index(i), rv.Index(i)); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return out.Interface(), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if rv.IsNil() {
			return rv.Interface(), nil
		}
		out := reflect.MakeMapWithSize(rv.Type(), rv.Len())
		for it := rv.MapRange(); it.Next(); {
			e := reflect.New(rv.Type().Elem()).Elem()
			if err := cloneInto(e, it.Value()); err != nil {
				return nil, fmt.Errorf("key %q: %w", it.Key().String(), err)
			}
			out.SetMapIndex(it.Key(), e)
		}
		return out.Interface(), nil
	}
	return nil, fmt.Errorf("a %s cannot travel in a header (nil, bool, string, []byte, numbers, time.Time, and lists and string-keyed tables of these can): %w",
		rv.Type(), transport.ErrNotSupported)
}

func cloneInto(dst, src reflect.Value) error {
	if (src.Kind() == reflect.Interface || src.Kind() == reflect.Pointer) && src.IsNil() {
		if src.Kind() == reflect.Pointer {
			return fmt.Errorf("a %s cannot travel in a header: %w", src.Type(), transport.ErrNotSupported)
		}
		return nil // dst is already the zero value
	}
	c, err := cloneValue(src.Interface())
	if err != nil {
		return err
	}
	if c != nil {
		dst.Set(reflect.ValueOf(c))
	}
	return nil
}
