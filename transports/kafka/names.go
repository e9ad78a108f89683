package kafka

import (
	"fmt"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
)

// maxTopicName is Kafka's limit on a topic name.
const maxTopicName = 249

// topicName is Kombu's Channel.sanitize_queue_name: Celery's queue names
// may hold '@' (celery@host.dq), which Kafka refuses in a topic name, so
// Kombu drops it. Go and Python publishing to "celery@host" meet in the
// topic "celeryhost".
func topicName(queue string) string { return strings.ReplaceAll(queue, "@", "") }

// groupName is the consumer group Kombu's consumers of a queue join.
func groupName(queue string) string { return topicName(queue) + groupSuffix }

// checkTopic refuses, naming it, a topic name Kafka cannot hold: empty,
// "." or "..", longer than 249 bytes, or with characters other than
// ASCII letters, digits, '.', '_' and '-'.
func checkTopic(topic string) error {
	switch {
	case topic == "" || topic == "." || topic == "..":
		return fmt.Errorf("topic name %q: Kafka refuses it: %w", topic, transport.ErrNotSupported)
	case len(topic) > maxTopicName:
		return fmt.Errorf("topic name %q: longer than Kafka's %d bytes: %w", topic[:40]+"...", maxTopicName, transport.ErrNotSupported)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			continue
		}
		return fmt.Errorf("topic name %q: Kafka allows only ASCII letters, digits, '.', '_' and '-' (%q at %d): %w",
			topic, c, i, transport.ErrNotSupported)
	}
	return nil
}

// TopicName is the topic that holds a queue's messages: the queue's name
// without '@', as Kombu sanitizes it.
func TopicName(queue string) string { return topicName(queue) }
