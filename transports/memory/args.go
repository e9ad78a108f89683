package memory

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// queueArgs are the x- arguments of a queue that change its behaviour.
type queueArgs struct {
	ttl, expires           time.Duration // x-message-ttl, x-expires
	hasTTL, hasExpires     bool
	maxLen, maxBytes       int // x-max-length, x-max-length-bytes
	hasMaxLen, hasMaxBytes bool
	maxPriority            uint8 // x-max-priority; 0: not a priority queue
	dlx, dlrk              string
	hasDLX, hasDLRK        bool // x-dead-letter-exchange, x-dead-letter-routing-key
}

// parseQueueArgs validates a queue's arguments. Values may be any Go integer
// type, or a float64 holding an integer as JSON decoding produces. The
// contract forbids ignoring an argument that would change delivery, so
// every x- argument is either honoured, known to be advisory, or refused with
// ErrNotSupported. Other arguments are only kept for declaration equivalence,
// as RabbitMQ keeps them.
func parseQueueArgs(queue string, args map[string]any) (queueArgs, error) {
	var qa queueArgs
	invalid := func(name string, v any, want string) error {
		return fmt.Errorf("memory: queue %q: argument %s must be %s, got %T %#v: %w", queue, name, want, v, v, transport.ErrPrecondition)
	}
	unsupported := func(name string, v any) error {
		return fmt.Errorf("memory: queue %q: argument %s=%#v: %w", queue, name, v, transport.ErrNotSupported)
	}
	for _, name := range slices.Sorted(maps.Keys(args)) {
		v := args[name]
		switch name {
		case "x-message-ttl", "x-expires":
			n, ok := intArg(v)
			if name == "x-expires" && (!ok || n <= 0) {
				return qa, invalid(name, v, "a positive integer number of milliseconds")
			}
			if !ok || n < 0 {
				return qa, invalid(name, v, "a non-negative integer number of milliseconds")
			}
			d := time.Duration(min(n, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
			if name == "x-message-ttl" {
				qa.ttl, qa.hasTTL = d, true
			} else {
				qa.expires, qa.hasExpires = d, true
			}
		case "x-max-length", "x-max-length-bytes":
			n, ok := intArg(v)
			if !ok || n < 0 {
				return qa, invalid(name, v, "a non-negative integer")
			}
			if name == "x-max-length" {
				qa.maxLen, qa.hasMaxLen = int(min(n, math.MaxInt)), true
			} else {
				qa.maxBytes, qa.hasMaxBytes = int(min(n, math.MaxInt)), true
			}
		case "x-max-priority":
			n, ok := intArg(v)
			if !ok || n < 0 || n > 255 {
				return qa, invalid(name, v, "an integer from 0 to 255")
			}
			qa.maxPriority = uint8(n)
		case "x-dead-letter-exchange", "x-dead-letter-routing-key":
			s, ok := v.(string)
			if !ok {
				return qa, invalid(name, v, "a string")
			}
			if name == "x-dead-letter-exchange" {
				qa.dlx, qa.hasDLX = s, true
			} else {
				qa.dlrk, qa.hasDLRK = s, true
			}
		case "x-overflow":
			switch v {
			case "drop-head":
			case "reject-publish", "reject-publish-dlx":
				return qa, unsupported(name, v)
			default:
				return qa, invalid(name, v, `"drop-head", "reject-publish" or "reject-publish-dlx"`)
			}
		case "x-queue-type":
			switch v {
			case "classic":
			case "quorum", "stream":
				return qa, unsupported(name, v)
			default:
				return qa, invalid(name, v, `"classic", "quorum" or "stream"`)
			}
		case "x-single-active-consumer":
			switch v {
			case false:
			case true:
				return qa, unsupported(name, v)
			default:
				return qa, invalid(name, v, "a bool")
			}
		case "x-queue-mode", "x-queue-version", "x-queue-master-locator", "x-queue-leader-locator":
			// Storage and placement hints with no effect on delivery.
		default:
			if strings.HasPrefix(name, "x-") {
				return qa, unsupported(name, v)
			}
		}
	}
	if qa.hasDLRK && !qa.hasDLX {
		return qa, fmt.Errorf("memory: queue %q: argument x-dead-letter-routing-key needs x-dead-letter-exchange: %w", queue, transport.ErrPrecondition)
	}
	return qa, nil
}

// parseExchangeArgs validates an exchange's arguments and returns its
// alternate exchange, if any.
func parseExchangeArgs(exchange string, args map[string]any) (alternate string, err error) {
	for _, name := range slices.Sorted(maps.Keys(args)) {
		v := args[name]
		switch {
		case name == "alternate-exchange":
			s, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("memory: exchange %q: argument alternate-exchange must be a string, got %T %#v: %w", exchange, v, v, transport.ErrPrecondition)
			}
			alternate = s
		case strings.HasPrefix(name, "x-"):
			return "", fmt.Errorf("memory: exchange %q: argument %s=%#v: %w", exchange, name, v, transport.ErrNotSupported)
		}
	}
	return alternate, nil
}

// intArg returns v as an int64 if it is a Go integer, or a float holding an
// integer. time.Duration is deliberately not accepted: arguments are in
// milliseconds, and a Duration would be read as nanoseconds.
func intArg(v any) (int64, bool) {
	n, f, isFloat, ok := number(v)
	switch {
	case !ok:
		return 0, false
	case isFloat:
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int64(f), true
	}
	return n, true
}

// number reports a Go numeric value as an int64, or as a float64 for floats
// and for unsigned values beyond int64.
func number(v any) (n int64, f float64, isFloat, ok bool) {
	switch v := v.(type) {
	case int:
		return int64(v), 0, false, true
	case int8:
		return int64(v), 0, false, true
	case int16:
		return int64(v), 0, false, true
	case int32:
		return int64(v), 0, false, true
	case int64:
		return v, 0, false, true
	case uint:
		return number(uint64(v))
	case uint8:
		return int64(v), 0, false, true
	case uint16:
		return int64(v), 0, false, true
	case uint32:
		return int64(v), 0, false, true
	case uint64:
		if v > math.MaxInt64 {
			return 0, float64(v), true, true
		}
		return int64(v), 0, false, true
	case float32:
		return 0, float64(v), true, true
	case float64:
		return 0, v, true, true
	}
	return 0, 0, false, false
}

// valuesEqual compares header and argument values the way two AMQP peers
// would see them after encoding: numbers by value whatever their Go type,
// strings equal to byte slices with the same content, and tables and arrays
// element by element.
func valuesEqual(a, b any) bool {
	an, af, aFloat, aNum := number(a)
	bn, bf, bFloat, bNum := number(b)
	if aNum || bNum {
		switch {
		case !aNum || !bNum:
			return false
		case !aFloat && !bFloat:
			return an == bn
		}
		if !aFloat {
			af = float64(an)
		}
		if !bFloat {
			bf = float64(bn)
		}
		return af == bf
	}
	switch a := a.(type) {
	case string:
		switch b := b.(type) {
		case string:
			return a == b
		case []byte:
			return a == string(b)
		}
		return false
	case []byte:
		switch b := b.(type) {
		case string:
			return string(a) == b
		case []byte:
			return bytes.Equal(a, b)
		}
		return false
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && argsEqual(a, b)
	case []any:
		b, ok := b.([]any)
		return ok && slices.EqualFunc(a, b, valuesEqual)
	}
	return reflect.DeepEqual(a, b)
}

// argsEqual compares two argument tables; nil and empty are equal.
func argsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !valuesEqual(av, bv) {
			return false
		}
	}
	return true
}

// diffArgs describes the first argument, in name order, that differs
// between an entity's arguments and a redeclaration's, or returns "".
func diffArgs(have, want map[string]any) string {
	names := slices.Sorted(maps.Keys(have))
	for k := range want {
		if _, ok := have[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		hv, hok := have[k]
		wv, wok := want[k]
		if hok != wok || !valuesEqual(hv, wv) {
			return fmt.Sprintf("argument %s is %s, declared as %s", k, describe(hv, hok), describe(wv, wok))
		}
	}
	return ""
}

func describe(v any, present bool) string {
	if !present {
		return "absent"
	}
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%v", v)
}
