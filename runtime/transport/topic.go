package transport

import "github.com/kombu-go/kombu/internal/topic"

// Topic matching follows RabbitMQ's rabbit_db_topic_exchange: keys are split
// on "." into words, where empty words count ("a..b" is "a", "", "b" and ".b"
// is "", "b"), except that the empty key is no words at all
// (split_topic_key_binary(<<>>) -> []). So "#" matches "", "*" matches "" only
// as part of a longer key such as ".b", and "*" alone does not match "".
// The matching itself is in internal/topic, which protoc-gen-kombu shares.

// TopicPattern is a topic binding key split into words once, so that
// matching a routing key against it allocates nothing.
type TopicPattern []string

// CompileTopic splits a topic binding key into a TopicPattern.
func CompileTopic(bindingKey string) TopicPattern { return topic.Split(bindingKey) }

// Match reports whether routingKey matches the pattern: "*" matches exactly
// one word and "#" zero or more. It walks the key in place rather than
// splitting it.
func (p TopicPattern) Match(routingKey string) bool { return topic.Match(p, routingKey) }

// MatchTopic reports whether a topic binding key matches a routing key.
func MatchTopic(bindingKey, routingKey string) bool {
	return CompileTopic(bindingKey).Match(routingKey)
}
