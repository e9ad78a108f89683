package sqs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
)

// maxQueueName is SQS's limit on a queue name, ".fifo" included.
const maxQueueName = 80

// entityName is Kombu's SQS Channel.entity_name: every ASCII punctuation
// character but '-', '_' and '.' becomes '_', and '.' becomes '-', except
// in a ".fifo" suffix, which is kept. Kombu applies it to the queue name
// prefix and the queue name together, so Go and Python publishing to
// "celery@host.tasks" meet in the SQS queue "celery_host-tasks".
func entityName(name string) string {
	fifo := strings.HasSuffix(name, ".fifo")
	if fifo {
		name = strings.TrimSuffix(name, ".fifo")
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case c == '.':
			b[i] = '-'
		case c == '-' || c == '_':
		case isPunct(c):
			b[i] = '_'
		}
	}
	if fifo {
		return string(b) + ".fifo"
	}
	return string(b)
}

// isPunct is Python's string.punctuation.
func isPunct(c byte) bool {
	return strings.IndexByte("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) >= 0
}

// shorten fits a mangled name longer than SQS's 80 characters into 80:
// its first characters, '-', and 16 hex digits of its SHA-256 (a ".fifo"
// suffix kept). Kombu sends such a name to SQS, which refuses it, so no
// Python process uses one: shortening it clashes with nothing of Kombu's,
// and lets kombu-go's long generated names (Celery's reply queues, tests)
// work.
func shorten(name string) string {
	if len(name) <= maxQueueName {
		return name
	}
	base, fifo := strings.CutSuffix(name, ".fifo")
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:8])
	if fifo {
		suffix += ".fifo"
	}
	return base[:maxQueueName-len(suffix)] + suffix
}

// checkName refuses, before any request, a mangled name SQS would refuse:
// SQS allows 1 to 80 characters, letters, digits, '-' and '_', and a
// ".fifo" suffix. Kombu leaves such names to SQS's error; kombu-go names
// the queue and what is wrong with it.
func checkName(kombuName, sqsName string) error {
	base := strings.TrimSuffix(sqsName, ".fifo")
	if base == "" {
		return fmt.Errorf("queue %q: SQS needs a non-empty queue name: %w", kombuName, transport.ErrNotSupported)
	}
	for _, r := range base {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("queue %q: its SQS name %q holds %q, SQS allows letters, digits, '-' and '_': %w", kombuName, sqsName, r, transport.ErrNotSupported)
		}
	}
	return nil
}
