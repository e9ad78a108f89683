package gcpubsub

import (
	"crypto/md5"
	"fmt"
	"os"
	"strings"
)

// entityName is Kombu's Channel.entity_name: the prefix in front (unless
// the name has it already), '.' to '-', and every other ASCII punctuation
// character but '_', '.' and '-' to '_'. Kombu names a queue's
// subscription so; exchanges name their topics unchanged.
func entityName(prefix, name string) string {
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.':
			return '-'
		case r == '_' || r == '-':
			return r
		case r < 128 && strings.ContainsRune(asciiPunctuation, r):
			return '_'
		}
		return r
	}, name)
}

// asciiPunctuation is Python's string.punctuation.
const asciiPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// routingKeyFilter is the subscription filter Kombu writes for a queue
// bound to a direct exchange.
func routingKeyFilter(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("attributes.routing_key=%q", k)
	}
	return strings.Join(parts, " OR ")
}

// filterKeys reads back the routing keys of a filter routingKeyFilter
// wrote (Kombu's is the one-key case). ok is false for any other filter.
func filterKeys(filter string) (keys []string, ok bool) {
	if filter == "" {
		return nil, true
	}
	for _, part := range strings.Split(filter, " OR ") {
		v, found := strings.CutPrefix(strings.TrimSpace(part), "attributes.routing_key=")
		if !found || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return nil, false
		}
		keys = append(keys, strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`))
	}
	return keys, true
}

// namespaceOID is Python's uuid.NAMESPACE_OID.
var namespaceOID = [16]byte{0x6b, 0xa7, 0xb8, 0x12, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// uuid3 is Python's uuid.uuid3 (RFC 4122 version 3, MD5).
func uuid3(ns [16]byte, name string) string {
	h := md5.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x30
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// processID is the suffix of Kombu's fanout subscriptions:
// uuid3(NAMESPACE_OID, "<hostname>.<pid>"), one per process.
func processID() string {
	host, _ := os.Hostname()
	return uuid3(namespaceOID, fmt.Sprintf("%s.%d", host, os.Getpid()))
}
