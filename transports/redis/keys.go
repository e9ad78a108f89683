package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Kombu's Redis layout (kombu/transport/redis.py):
//
//	<queue>                       LIST, priority step 0 (LPUSH to publish, RPOP to take)
//	<queue>\x06\x16<step>          LIST, priority steps 3, 6 and 9
//	_kombu.binding.<exchange>     SET of "<routing key>\x06\x16<pattern>\x06\x16<queue>"
//	unacked                       HASH delivery tag → JSON [message, exchange, routing key]
//	unacked_index                 ZSET delivery tag scored by the time it was taken
//	unacked_mutex                 STRING, the lock restore_visible takes
//	/<db>.<exchange>[/<key>]      PUB/SUB channel of a fanout exchange
//
// kombu-go adds one kind of key of its own, which Kombu never reads:
//
//	_kombu-go.take.<conn id>.<n>  STRING, a take's receipt (receipt.go), expiring after the visibility timeout
//
// global_keyprefix is prepended to every key and channel name.

// sep separates the parts of a binding member and a queue from its
// priority step, as Kombu's Channel.sep.
const sep = "\x06\x16"

// priorityStepValues are Kombu's default priority_steps.
var priorityStepValues = [...]int{0, 3, 6, 9}

const numSteps = len(priorityStepValues)

// keyspace names the keys and channels of one connection's database.
type keyspace struct {
	prefix         string // global_keyprefix
	fanoutPrefix   string // "/<db>." by default
	fanoutPatterns bool
	unacked        string // with the prefix
	unackedIndex   string
	unackedMutex   string
	// sharded: Redis Cluster's sharded mode (cluster.go): every key of a
	// queue carries the queue's name as its hash tag, and the unacked
	// bookkeeping is per queue.
	sharded bool
}

// queueKey returns the base of a queue's keys: the queue's name, and, in
// the sharded mode, the name inside braces, Redis Cluster's hash tag.
func (k *keyspace) queueKey(queue string) string {
	if k.sharded {
		return k.prefix + "{" + queue + "}"
	}
	return k.prefix + queue
}

// unackedOf, unackedIndexOf and unackedMutexOf name the unacked
// bookkeeping of a queue's messages: Kombu's global keys, or, in the
// sharded mode, the queue's own, in its slot.
func (k *keyspace) unackedOf(queue string) string {
	if k.sharded {
		return k.queueKey(queue) + ":unacked"
	}
	return k.unacked
}

func (k *keyspace) unackedIndexOf(queue string) string {
	if k.sharded {
		return k.queueKey(queue) + ":unacked_index"
	}
	return k.unackedIndex
}

func (k *keyspace) unackedMutexOf(queue string) string {
	if k.sharded {
		return k.queueKey(queue) + ":unacked_mutex"
	}
	return k.unackedMutex
}

// checkQueue refuses, in the sharded mode, a queue name that cannot be
// its keys' hash tag: one starting with "}" makes the tag empty, and Redis
// then hashes each key whole, scattering the queue's keys over slots.
func (k *keyspace) checkQueue(queue string) error {
	if k.sharded && strings.HasPrefix(queue, "}") {
		return fmt.Errorf("redis: queue %q: in cluster_mode=sharded a queue name cannot start with '}' (its keys' hash tag would be empty): %w", queue, transport.ErrNotSupported)
	}
	return nil
}

// shardedIndexSuffix ends the name of a queue's unacked_index in the
// sharded mode; the restorer finds them by it.
const shardedIndexSuffix = "}:unacked_index"

// receiptOf returns the receipt key of a take from queue: the key itself,
// or, in the sharded mode, one in the queue's slot.
func (k *keyspace) receiptOf(receipt, queue string) string {
	if k.sharded {
		return k.queueKey(queue) + ":" + receipt
	}
	return receipt
}

// ackKey is what a connection records an unsettled message under, for its
// acknowledgement and lease renewal: the unacked hash key, and in the
// sharded mode its queue too (whose unacked keys it must address).
func (k *keyspace) ackKey(e *entry) string {
	if k.sharded {
		return e.queue + "\x00" + e.hkey
	}
	return e.hkey
}

// splitAckKey undoes ackKey: the queue ("" outside the sharded mode) and
// the unacked hash key.
func (k *keyspace) splitAckKey(key string) (queue, hkey string) {
	if k.sharded {
		if i := strings.LastIndexByte(key, 0); i >= 0 {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

// bucket returns the list key of a queue's priority step (an index into
// priorityStepValues).
func (k *keyspace) bucket(queue string, step int) string {
	if step == 0 {
		return k.queueKey(queue)
	}
	return k.queueKey(queue) + sep + strconv.Itoa(priorityStepValues[step])
}

// buckets returns the list keys of a queue, step 0 first.
func (k *keyspace) buckets(queue string) [numSteps]string {
	var out [numSteps]string
	for i := range out {
		out[i] = k.bucket(queue, i)
	}
	return out
}

// stepFor maps a message priority to its step as Kombu's _put does: the
// priority is clamped to 0..9 and the largest step not above it is taken.
func stepFor(priority int) int {
	priority = min(max(priority, 0), virtual.MaxPriority)
	step := 0
	for i, v := range priorityStepValues {
		if v <= priority {
			step = i
		}
	}
	return step
}

func (k *keyspace) binding(exchange string) string {
	return k.prefix + "_kombu.binding." + exchange
}

// fanoutChannel is the channel Kombu publishes a fanout message on, and,
// with a binding's key (with '#' turned to '*'), the pattern its consumers
// subscribe to.
func (k *keyspace) fanoutChannel(exchange, routingKey string) string {
	if routingKey != "" && k.fanoutPatterns {
		return k.prefix + k.fanoutPrefix + exchange + "/" + routingKey
	}
	return k.prefix + k.fanoutPrefix + exchange
}

// bindingMember is the set member Kombu writes for a binding.
func bindingMember(b virtual.Binding) string {
	return b.RoutingKey + sep + b.Pattern + sep + b.Queue
}

// parseBindingMember splits a binding member. Members that do not have
// three parts are not Kombu's and are skipped, as Python would fail on them.
func parseBindingMember(m string) (virtual.Binding, bool) {
	parts := strings.Split(m, sep)
	if len(parts) != 3 {
		return virtual.Binding{}, false
	}
	return virtual.Binding{RoutingKey: parts[0], Pattern: parts[1], Queue: parts[2]}, true
}
