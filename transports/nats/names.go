package nats

import (
	"fmt"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
)

// maxToken bounds an escaped queue name: a stream name is the stream
// prefix and the token, and the server keeps stream names to 255 bytes
// (they become folder names in its store).
const maxToken = 200

// token escapes a Kombu name (a queue, an exchange) into one NATS subject
// token that is also valid in a stream name and a key-value key: letters,
// digits and '-' stay, every other byte becomes '_' and two hex digits, so
// that "celery.pidbox" and "celery_pidbox" stay apart and '.', '*', '>' and
// spaces never reach the server as subject syntax. It fails with
// transport.ErrNotSupported for the empty name and for one too long to
// name a stream.
func token(kind, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("an empty %s name: %w", kind, transport.ErrNotSupported)
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	if b.Len() > maxToken {
		return "", fmt.Errorf("%s name %q: %d bytes once escaped for NATS, over %d: %w",
			kind, name, b.Len(), maxToken, transport.ErrNotSupported)
	}
	return b.String(), nil
}

// untoken reverses token; ok is false for a token token never writes.
func untoken(tok string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+3 > len(tok) {
			return "", false
		}
		var v byte
		if _, err := fmt.Sscanf(tok[i+1:i+3], "%02X", &v); err != nil {
			return "", false
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), true
}

// validPrefix reports whether s can start stream names or subjects: one or
// more subject tokens of letters, digits, '-' and '_' (dots between tokens
// where dots is set).
func validPrefix(s string, dots bool) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || (!dots && part != s) {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
