// Package topic matches AMQP topic binding keys against routing keys. It is
// the one implementation behind runtime/transport's CompileTopic and
// MatchTopic, kept here so that protoc-gen-kombu, which checks at generation
// time that a route's key reaches its queue, can use it without linking the
// runtime.
package topic

import "strings"

// Topic matching follows RabbitMQ's rabbit_db_topic_exchange: keys are split
// on "." into words, where empty words count ("a..b" is "a", "", "b" and ".b"
// is "", "b"), except that the empty key is no words at all
// (split_topic_key_binary(<<>>) -> []). So "#" matches "", "*" matches "" only
// as part of a longer key such as ".b", and "*" alone does not match "".

// Split splits a binding key into its words.
func Split(bindingKey string) []string {
	if bindingKey == "" {
		return nil
	}
	return strings.Split(bindingKey, ".")
}

// Match reports whether routingKey matches the words of a binding key (as
// Split returns them): "*" matches exactly one word and "#" zero or more. It
// walks the key in place rather than splitting it, and allocates nothing.
func Match(pattern []string, routingKey string) bool {
	return matchWords(pattern, routingKey, routingKey == "")
}

// matchWords matches pattern against the words of key; none says key holds no
// more words (which differs from holding one empty word).
func matchWords(pattern []string, key string, none bool) bool {
	for len(pattern) > 0 {
		p := pattern[0]
		pattern = pattern[1:]
		if p == "#" {
			if len(pattern) == 0 {
				return true
			}
			// Let "#" swallow zero words, then one more at a time.
			for {
				if matchWords(pattern, key, none) {
					return true
				}
				if none {
					return false
				}
				_, key, none = nextWord(key)
			}
		}
		if none {
			return false
		}
		var w string
		w, key, none = nextWord(key)
		if p != "*" && p != w {
			return false
		}
	}
	return none
}

// nextWord splits the first word off key, which holds at least one word.
func nextWord(key string) (word, rest string, none bool) {
	i := strings.IndexByte(key, '.')
	if i < 0 {
		return key, "", true
	}
	return key[:i], key[i+1:], false
}
