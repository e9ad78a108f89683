package virtual

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Kombu's virtual topic exchange does not match words the way RabbitMQ does.
// It turns a binding key into a Python regular expression
// (TopicExchange.key_to_pattern): words are split on ".", every
// non-alphanumeric character is escaped, "*" becomes `.*?[^\.]` and "#"
// becomes `.*?`, anchored with ^ and $. It stores that text in the binding
// store (Redis's binding sets, the filesystem's control files) and matches
// routing keys with re.match. So "*" can match several words ("a.*"
// matches "a.b.c"), "#" matches within a word ("a#" is not special but
// "a.#" needs at least "a."), and "a.#" does not match "a". kombu-go writes
// the same text, so Python publishers route to queues Go bound, and
// evaluates the stored text, so Go publishers route to queues Python bound.

// KeyToPattern is Kombu's TopicExchange.key_to_pattern: the Python regular
// expression a topic binding key is stored and matched as.
func KeyToPattern(bindingKey string) string {
	escaped := escapeRegex(bindingKey, ".#*")
	words := strings.Split(escaped, ".")
	for i, w := range words {
		switch w {
		case "*":
			words[i] = `.*?[^\.]`
		case "#":
			words[i] = `.*?`
		}
	}
	return "^" + strings.Join(words, `\.`) + "$"
}

// escapeRegex is kombu.utils.text.escape_regex: every character that is not
// alphanumeric (in Unicode's sense, as str.isalnum) or in white is
// backslash-escaped, and NUL becomes \000.
func escapeRegex(s, white string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case isAlnum(r) || strings.ContainsRune(white, r):
			b.WriteRune(r)
		case r == 0:
			b.WriteString(`\000`)
		default:
			b.WriteByte('\\')
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

// compilePyPattern compiles a Python regular expression of the kind Kombu
// stores in binding sets for Go's regexp package, with re.match's meaning:
// anchored at the start, and "$" matching at the end or before a final
// newline. It translates the escapes Python allows and RE2 does not (a
// backslash before any non-ASCII character, \000, \Z); a pattern that still
// does not compile is an error, and its binding matches nothing.
func compilePyPattern(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`\A(?:`)
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '\\' && i+1 < len(pattern):
			r, size := utf8.DecodeRuneInString(pattern[i+1:])
			switch {
			case r >= utf8.RuneSelf:
				b.WriteString(regexp.QuoteMeta(string(r)))
			case r == '0':
				// \0, \00, \000: an octal escape of up to three digits.
				j, v := i+1, 0
				for n := 0; n < 3 && j < len(pattern) && pattern[j] >= '0' && pattern[j] <= '7'; n++ {
					v = v*8 + int(pattern[j]-'0')
					j++
				}
				fmt.Fprintf(&b, `\x{%x}`, v)
				i = j
				continue
			case r == 'Z':
				b.WriteString(`\z`)
			default:
				b.WriteByte('\\')
				b.WriteRune(r)
			}
			i += 1 + size
		case c == '$':
			// Python's $ also matches before a newline that ends the string.
			b.WriteString(`(?:\n?\z)`)
			i++
		default:
			r, size := utf8.DecodeRuneInString(pattern[i:])
			b.WriteRune(r)
			i += size
		}
	}
	b.WriteString(`)`)
	return regexp.Compile(b.String())
}

// Compiled patterns are shared by every connection, as Kombu's
// TopicExchange._compiled is.
var (
	patternsMu sync.RWMutex
	patterns   = map[string]*pyMatcher{} // nil: does not compile
)

// pyMatcher matches one stored pattern: by comparing strings where the
// pattern is a literal key (KeyToPattern of a binding key without
// wildcards, the most common binding: a regexp match costs a publish far
// more), by its regexp otherwise.
//
// A regexp's answers are remembered per routing key (up to
// matchCacheSize of them): a publisher sends a few routing keys many
// times, and a map lookup costs a small part of the regexp's
// backtracking, which was a tenth of a pipelined publish's CPU.
type pyMatcher struct {
	re    *regexp.Regexp
	lit   string
	isLit bool

	mu   sync.RWMutex
	seen map[string]bool // routing key → whether re matches it
}

// matchCacheSize bounds a pattern's remembered answers: routing keys
// that carry ids would otherwise grow it without end.
const matchCacheSize = 1024

func (m *pyMatcher) match(routingKey string) bool {
	if m.isLit {
		// re.match(r"^lit$"): "$" matches before a final newline too.
		return routingKey == m.lit ||
			len(routingKey) == len(m.lit)+1 && routingKey[len(m.lit)] == '\n' && routingKey[:len(m.lit)] == m.lit
	}
	m.mu.RLock()
	ok, known := m.seen[routingKey]
	m.mu.RUnlock()
	if known {
		return ok
	}
	ok = m.re.MatchString(routingKey)
	m.mu.Lock()
	if m.seen == nil || len(m.seen) >= matchCacheSize {
		m.seen = map[string]bool{}
	}
	m.seen[routingKey] = ok
	m.mu.Unlock()
	return ok
}

// literalPattern returns the text a pattern matches when it is "^", then
// only ASCII letters, digits and backslash-escaped ASCII punctuation
// (which both Python and RE2 read as the character itself), then "$".
func literalPattern(pattern string) (string, bool) {
	if len(pattern) < 2 || pattern[0] != '^' || pattern[len(pattern)-1] != '$' {
		return "", false
	}
	mid := pattern[1 : len(pattern)-1]
	b := make([]byte, 0, len(mid))
	for i := 0; i < len(mid); i++ {
		c := mid[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			b = append(b, c)
		case c == '\\' && i+1 < len(mid) && isASCIIPunct(mid[i+1]):
			b = append(b, mid[i+1])
			i++
		default:
			return "", false
		}
	}
	return string(b), true
}

func isASCIIPunct(c byte) bool {
	return c > ' ' && c < 0x7f && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
}

// MatchPattern is re.match(pattern, routingKey) for the patterns Kombu
// stores with topic bindings, compiled once and cached. A pattern Go's
// regexp cannot read (see compilePyPattern) matches nothing.
func MatchPattern(pattern, routingKey string) bool {
	patternsMu.RLock()
	m, ok := patterns[pattern]
	patternsMu.RUnlock()
	if !ok {
		if lit, isLit := literalPattern(pattern); isLit {
			m = &pyMatcher{lit: lit, isLit: true}
		} else if re, err := compilePyPattern(pattern); err == nil {
			m = &pyMatcher{re: re}
		}
		patternsMu.Lock()
		if len(patterns) > 10000 {
			clear(patterns)
		}
		patterns[pattern] = m
		patternsMu.Unlock()
	}
	return m != nil && m.match(routingKey)
}
