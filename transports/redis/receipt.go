package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Take receipts. A take runs as one script that moves messages from their
// lists into the unacked hash. If its reply never arrives (Redis stopped
// between running the script and sending the reply, which a SIGTERM or a
// failover does, or the connection broke in between), the messages are in
// the hash and nobody holds them: Kombu, and this driver before receipts,
// left them there until the visibility timeout (an hour by default).
//
// So each take that records messages also writes a receipt under a key of
// its caller's (the take's number and what it recorded; see takeScript),
// and a take that fails is followed by recoverTake, made now or, if Redis
// does not answer, held by the ackFlusher with the other settlements until
// it does (or one last time at Close). recoverTake reads the receipt and,
// if it is the failed take's, returns those messages to the front of their
// queues. If the take never ran, the receipt is an older one (or none) and
// nothing is returned: the recovery is exact, never a guess.
//
// Receipt keys are kombu-go's own, beside Kombu's layout:
//
//	_kombu-go.take.<connection id>.<n>   STRING, JSON ["<take number>", [[queue position, step, hash key], ...]]
//
// One per subscription (its takes follow one another) and one per Get in
// flight (kept in a free list, so concurrent Gets never share one); each
// expires after the visibility timeout, by when restore_visible would have
// returned the messages anyway; a subscription deletes its own when it
// ends, and Close the Get keys.

// receipts hands out receipt keys for one connection.
type receipts struct {
	prefix string // "<global_keyprefix>_kombu-go.take.<connection id>."

	mu   sync.Mutex
	next int
	free []string // Get keys not in use
}

func newReceipts(keyprefix string) *receipts {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24)
	return &receipts{prefix: keyprefix + "_kombu-go.take." + hex.EncodeToString(id[:]) + "."}
}

// key returns a new receipt key.
func (r *receipts) key() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	return r.prefix + strconv.Itoa(r.next)
}

// acquire returns a key for one Get; release gives it back.
func (r *receipts) acquire() string {
	r.mu.Lock()
	if n := len(r.free); n > 0 {
		k := r.free[n-1]
		r.free = r.free[:n-1]
		r.mu.Unlock()
		return k
	}
	r.mu.Unlock()
	return r.key()
}

func (r *receipts) release(k string) {
	r.mu.Lock()
	r.free = append(r.free, k)
	r.mu.Unlock()
}

// idle returns the Get keys not in use, for Close to delete.
func (r *receipts) idle() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.free
}

// lostTake is a take whose reply did not arrive.
type lostTake struct {
	receipt string
	seq     uint64
	queues  []string // the take's queues, in the order its positions count
}

// recoverLater returns, now or once Redis answers, what a failed take may
// have recorded.
func (c *conn) recoverLater(l lostTake) {
	err := c.settleNow("return messages taken by a take whose reply was lost", 0, func(ctx context.Context) error {
		return c.recoverAndLog(ctx, l)
	})
	if err != nil {
		c.log.Warn("redis: a take's reply was lost, and what it took could not be returned; it will be restored after the visibility timeout",
			"queues", l.queues, "error", err)
	}
}

// recoverAndLog is recoverTake, saying when it returned messages.
func (c *conn) recoverAndLog(ctx context.Context, l lostTake) error {
	n, err := c.recoverTake(ctx, l)
	if n > 0 {
		c.log.Info("redis: messages taken by a take whose reply was lost are back in their queues", "count", n, "queues", l.queues)
	}
	return err
}

// recoverTake returns to the front of their queues the messages the take
// l recorded, if its receipt says it ran, and reports how many.
func (c *conn) recoverTake(ctx context.Context, l lostTake) (int, error) {
	raw, err := c.rdb.Get(ctx, l.receipt).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil // it took nothing, or never ran
	}
	if err != nil {
		return 0, err
	}
	var rec struct {
		seq   string
		items [][3]json.RawMessage
	}
	var pair []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &pair); err != nil || len(pair) != 2 ||
		json.Unmarshal(pair[0], &rec.seq) != nil || json.Unmarshal(pair[1], &rec.items) != nil {
		return 0, fmt.Errorf("redis: malformed take receipt %q", l.receipt)
	}
	if rec.seq != strconv.FormatUint(l.seq, 10) {
		return 0, nil // the receipt of another take: this one never ran
	}
	type item struct {
		q, step int
		hkey    string
	}
	items := make([]item, 0, len(rec.items))
	hkeys := make([]string, 0, len(rec.items))
	for _, it := range rec.items {
		var x item
		if json.Unmarshal(it[0], &x.q) != nil || json.Unmarshal(it[1], &x.step) != nil || json.Unmarshal(it[2], &x.hkey) != nil ||
			x.q < 1 || x.q > len(l.queues) || x.step < 0 || x.step >= numSteps {
			return 0, fmt.Errorf("redis: malformed take receipt %q", l.receipt)
		}
		items = append(items, x)
		hkeys = append(hkeys, x.hkey)
	}
	// A lost take in the sharded mode is one queue's (conn.take).
	vals, err := c.rdb.HMGet(ctx, c.ks.unackedOf(l.queues[0]), hkeys...).Result()
	if err != nil {
		return 0, err
	}
	es := make([]*entry, 0, len(items))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // settled or restored meanwhile
		}
		envelope, _, _, err := parseUnacked(s)
		if err != nil {
			continue // not ours to judge: restore_visible deals with it
		}
		es = append(es, &entry{hkey: items[i].hkey, raw: envelope, queue: l.queues[items[i].q-1], step: items[i].step})
	}
	if err := c.pushBack(ctx, es, 'R'); err != nil {
		return 0, err
	}
	return len(es), c.rdb.Del(ctx, l.receipt).Err()
}
