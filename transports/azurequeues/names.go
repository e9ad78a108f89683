package azurequeues

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// entityName is Kombu's Channel.entity_name of the prefixed queue name:
// every ASCII punctuation character becomes '-'. Azure accepts only 3 to
// 63 lowercase letters, digits and single hyphens, beginning and ending
// with a letter or digit, so a name Kombu's mapping leaves invalid (which
// Kombu would fail to create) is made valid: lowercased, hyphens
// collapsed and trimmed, and a name too long or too short cut to 54
// characters and given a hash of the whole. A name valid under Kombu's
// mapping is Kombu's, so both share the queue.
func entityName(prefix, queue string) string {
	name := strings.Map(func(r rune) rune {
		if r < 128 && strings.ContainsRune(asciiPunctuation, r) {
			return '-'
		}
		return r
	}, prefix+queue)
	if valid(name) {
		return name
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) >= 3 && len(out) <= 63 {
		return out
	}
	sum := sha1.Sum([]byte(prefix + queue))
	if len(out) > 54 {
		out = strings.TrimRight(out[:54], "-")
	}
	if out == "" {
		return "q-" + hex.EncodeToString(sum[:4])
	}
	return out + "-" + hex.EncodeToString(sum[:4])
}

const asciiPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// valid reports whether Azure accepts the queue name.
func valid(name string) bool {
	if len(name) < 3 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' || strings.Contains(name, "--") {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
