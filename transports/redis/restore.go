package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// take runs takeScript over the queues (in the order given, with their
// names pre-quoted as JSON) and returns what it took, recorded as unacked
// and leased when record is set, with a receipt under the key given (see
// receipt.go). It uses its own context: once the script has run, its reply
// must be read, or the messages it recorded would wait a visibility
// timeout for a restore. If the reply does not come, the error comes with
// the lost take, which the caller must recover (see receipt.go) before it
// takes again with the same receipt key.
func (c *conn) take(ctx context.Context, queues, quoted []string, n int, record bool, receipt string) ([]*entry, *lostTake, error) {
	if !c.ks.sharded {
		return c.takeSlot(ctx, queues, quoted, n, record, receipt)
	}
	// The sharded mode: one take per queue, each within the queue's slot
	// (with the queue's own unacked keys and receipt), in the order given,
	// until n are taken. Priorities are therefore honoured within a queue,
	// not across queues as Kombu's BRPOP over every queue's lists does.
	var out []*entry
	more := make([]bool, len(queues)) // the queue may hold more than it gave
	for i := range more {
		more[i] = true
	}
	if len(queues) > 1 {
		var err error
		if out, err = c.takeShares(ctx, queues, quoted, n, record, receipt, more); err != nil {
			return nil, nil, err
		}
	}
	for i, q := range queues {
		if len(out) >= n {
			break
		}
		if !more[i] {
			continue
		}
		es, lost, err := c.takeSlot(ctx, queues[i:i+1], quoted[i:i+1], n-len(out), record, c.ks.receiptOf(receipt, q))
		if err != nil {
			if len(out) == 0 {
				return nil, lost, err
			}
			// Hand over what the earlier queues gave; what this take may
			// have recorded goes back now or once Redis answers.
			if lost != nil {
				c.recoverLater(*lost)
			}
			return out, nil, nil
		}
		out = append(out, es...)
	}
	return out, nil, nil
}

// takeShares is the sharded mode's first round of a take from several
// queues: a take per queue, for an equal share of n (one each from the
// first n queues when n is smaller than their number), pipelined, so that
// the cluster client sends them to every master at once: a consumer woken
// to look at its queues makes one round trip, not one per queue. It
// clears more[i] for a queue that gave less than its share (it is empty).
// A take whose reply did not come is recovered (receipt.go) now or once
// Redis answers; if none answered, the error is returned.
func (c *conn) takeShares(ctx context.Context, queues, quoted []string, n int, record bool, receipt string, more []bool) ([]*entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	share := max(n/len(queues), 1)
	m := min(len(queues), n)
	calls := make([]*scriptCall, m)
	seqs := make([]uint64, m)
	for i := range m {
		keys, args, seq := c.takeCall(queues[i:i+1], quoted[i:i+1], share, record, c.ks.receiptOf(receipt, queues[i]))
		calls[i], seqs[i] = &scriptCall{keys: keys, args: args}, seq
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	perr := c.evalPipelined(tctx, takeScript, calls)
	var out []*entry
	answered := false
	for i, call := range calls {
		var res []any
		err := perr
		if call.cmd != nil {
			res, err = call.cmd.Slice()
		}
		if err != nil {
			if record {
				c.recoverLater(lostTake{receipt: c.ks.receiptOf(receipt, queues[i]), seq: seqs[i], queues: queues[i : i+1]})
			}
			more[i] = false // not again in this take
			continue
		}
		es, err := parseTake(res, queues[i:i+1])
		if err != nil {
			return nil, err
		}
		answered = true
		if record {
			c.lease(es)
		}
		out = append(out, es...)
		more[i] = len(es) == share
	}
	if !answered && perr != nil {
		return nil, perr
	}
	return out, nil
}

// takeSlot is take for queues whose keys share a slot: all of them in the
// Kombu layout, one in the sharded mode.
func (c *conn) takeSlot(ctx context.Context, queues, quoted []string, n int, record bool, receipt string) ([]*entry, *lostTake, error) {
	keys, args, seq := c.takeCall(queues, quoted, n, record, receipt)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	res, err := takeScript.Run(tctx, c.rdb, keys, args...).Slice()
	if err != nil {
		if record {
			return nil, &lostTake{receipt: receipt, seq: seq, queues: slices.Clone(queues)}, err
		}
		return nil, nil, err
	}
	out, err := parseTake(res, queues)
	if err != nil {
		return nil, nil, err
	}
	if record {
		c.lease(out)
	}
	return out, nil, nil
}

// takeCall returns takeScript's keys and arguments for a take, and the
// take's number.
func (c *conn) takeCall(queues, quoted []string, n int, record bool, receipt string) ([]string, []any, uint64) {
	keys := make([]string, 3, 3+numSteps*len(queues))
	keys[0], keys[1], keys[2] = c.ks.unackedOf(queues[0]), c.ks.unackedIndexOf(queues[0]), receipt
	for step := range numSteps {
		for _, q := range queues {
			keys = append(keys, c.ks.bucket(q, step))
		}
	}
	rec := "0"
	if record {
		rec = "1"
	}
	seq := c.takeSeq.Add(1)
	args := make([]any, 6, 6+len(queues))
	args[0], args[1], args[2], args[3] = n, strconv.FormatFloat(nowScore(), 'f', -1, 64), rec, len(queues)
	args[4], args[5] = seq, c.opts.visibilityTimeout.Milliseconds()
	for _, q := range quoted {
		args = append(args, q)
	}
	return keys, args, seq
}

// parseTake reads takeScript's reply.
func parseTake(res []any, queues []string) ([]*entry, error) {
	if len(res)%4 != 0 {
		return nil, fmt.Errorf("redis: take: malformed reply of %d values", len(res))
	}
	out := make([]*entry, 0, len(res)/4)
	for i := 0; i < len(res); i += 4 {
		q, _ := res[i].(int64)
		step, _ := res[i+1].(int64)
		raw, _ := res[i+2].(string)
		hkey, _ := res[i+3].(string)
		if q < 1 || int(q) > len(queues) || step < 0 || step >= int64(numSteps) {
			return nil, fmt.Errorf("redis: take: malformed reply")
		}
		out = append(out, &entry{hkey: hkey, raw: raw, queue: queues[q-1], step: int(step)})
	}
	return out, nil
}

// scriptCall is one script invocation in a pipeline.
type scriptCall struct {
	keys []string
	args []any
	cmd  *goredis.Cmd
}

// evalPipelined runs a script once per call in one pipeline, loading the
// script and running again the calls that found it missing from the
// server's cache (after a restart or a failover).
func (c *conn) evalPipelined(ctx context.Context, s *goredis.Script, calls []*scriptCall) error {
	pending := calls
	for attempt := 0; len(pending) > 0; attempt++ {
		pipe := c.rdb.Pipeline()
		for _, call := range pending {
			call.cmd = s.EvalSha(ctx, pipe, call.keys, call.args...)
		}
		if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
			return err
		}
		var missing []*scriptCall
		for _, call := range pending {
			if goredis.HasErrorPrefix(call.cmd.Err(), "NOSCRIPT") {
				missing = append(missing, call)
			}
		}
		if len(missing) == 0 || attempt > 0 {
			break
		}
		if err := s.Load(ctx, c.rdb).Err(); err != nil {
			return err
		}
		pending = missing
	}
	var errs []error
	for _, call := range calls {
		if err := call.cmd.Err(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pushBack returns taken messages to their queues with returnScript, each
// only if its unacked record is still there: delivered ones marked
// redelivered (as Kombu's _do_restore_message marks them), ones never
// handed over unchanged. where is 'L' for the back of the queue (a
// requeue) or 'R' for the front (a restore). The entries are returned in
// reverse, so that messages restored to the front keep their order.
func (c *conn) pushBack(ctx context.Context, es []*entry, where byte) error {
	if len(es) == 0 {
		return nil
	}
	calls := make([]*scriptCall, 0, len(es))
	keys := make([]string, 0, len(es))
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		payload := e.raw
		if e.delivered {
			if marked, err := virtual.MarkRedelivered([]byte(e.raw)); err == nil {
				payload = string(marked)
			}
		}
		calls = append(calls, &scriptCall{
			keys: []string{c.ks.unackedOf(e.queue), c.ks.unackedIndexOf(e.queue), c.ks.bucket(e.queue, e.step)},
			args: []any{e.hkey, payload, string(where)},
		})
		if e.hkey != "" {
			keys = append(keys, c.ks.ackKey(e))
		}
	}
	c.unlease(keys)
	return c.evalPipelined(ctx, returnScript, calls)
}

// returnEntries puts messages back at the front of their queues, once
// Redis answers if it does not now (see settleNow), logging failures:
// those messages come back after the visibility timeout instead.
func (c *conn) returnEntries(es []*entry) {
	if len(es) == 0 {
		return
	}
	err := c.settleNow("return", len(es), func(ctx context.Context) error { return c.pushBack(ctx, es, 'R') })
	if err != nil {
		c.log.Warn("redis: returning unsettled messages to their queues failed; they will be restored after the visibility timeout",
			"count", len(es), "error", err)
	}
}

// restoreLoop runs restoreVisible once at the start and then every
// restore interval, as Kombu's consumers do (every 10 s, or half the
// visibility timeout when that is shorter).
func (c *conn) restoreLoop() {
	defer c.bgWG.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.bgStop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		if n, err := c.restoreVisible(ctx); err != nil {
			c.log.Warn("redis: restoring messages past their visibility timeout failed", "error", err)
		} else if n > 0 {
			c.log.Info("redis: restored unacknowledged messages past their visibility timeout", "count", n)
		}
		cancel()
		t.Reset(c.opts.restoreInterval)
	}
}

// restoreVisible is Kombu's QoS.restore_visible: under the unacked_mutex
// lock (SET NX PX, released with redis-py's compare-and-delete script, so
// Kombu's restorers and ours exclude each other), every unacked entry whose
// score is older than the visibility timeout is put back on its queues,
// at the front, marked redelivered. It returns how many it restored.
func (c *conn) restoreVisible(ctx context.Context) (int, error) {
	if !c.ks.sharded {
		return c.restoreQueue(ctx, "")
	}
	// The sharded mode: each queue has its own unacked bookkeeping and
	// lock, in its slot. Find them on every master and restore each.
	var queues []string
	head := c.ks.prefix + "{"
	err := c.scanKeys(ctx, escapeGlob(head)+"*"+shardedIndexSuffix, func(keys []string) error {
		for _, k := range keys {
			if len(k) > len(head)+len(shardedIndexSuffix) {
				queues = append(queues, k[len(head):len(k)-len(shardedIndexSuffix)])
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for _, q := range queues {
		n, err := c.restoreQueue(ctx, q)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// restoreQueue is restoreVisible for the unacked bookkeeping of one queue
// in the sharded mode, or for Kombu's global one (queue "").
func (c *conn) restoreQueue(ctx context.Context, queue string) (int, error) {
	token := virtual.NewDeliveryTag()
	ok, err := c.rdb.SetNX(ctx, c.ks.unackedMutexOf(queue), token, c.opts.mutexExpire).Result()
	if err != nil || !ok {
		return 0, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if err := unlockScript.Run(uctx, c.rdb, []string{c.ks.unackedMutexOf(queue)}, token).Err(); err != nil {
			c.log.Warn("redis: releasing the unacked_mutex lock failed", "error", err)
		}
	}()
	ceil := nowScore() - c.opts.visibilityTimeout.Seconds()
	ceilText := strconv.FormatFloat(ceil, 'f', -1, 64)
	// Kombu's command, word for word.
	args := []any{"ZREVRANGEBYSCORE", c.ks.unackedIndexOf(queue), ceilText, 0}
	if c.opts.restoreLimit > 0 {
		args = append(args, "LIMIT", 0, c.opts.restoreLimit)
	}
	tags, err := c.rdb.Do(ctx, args...).StringSlice()
	if err != nil {
		return 0, err
	}
	restored := 0
	for _, tag := range tags {
		ok, err := c.restoreTag(ctx, queue, tag, ceilText)
		if err != nil {
			return restored, err
		}
		if ok {
			restored++
		}
	}
	return restored, nil
}

// restoreTag restores one stale entry through the queues its record names:
// the queue itself for records this driver wrote ("" and the queue's name),
// or a lookup of the exchange and routing key Kombu recorded, with the
// exchange's type as this connection knows it (direct if unknown), as
// Kombu's restore does.
//
// In the sharded mode the record is the queue's own (queue), and only
// restored to that queue, within its slot: kombu-go's records name it. A
// record naming anything else cannot be pushed in the same step, and is
// left where it is, as an unroutable one is.
func (c *conn) restoreTag(ctx context.Context, queue, tag, ceil string) (bool, error) {
	v, err := c.rdb.HGet(ctx, c.ks.unackedOf(queue), tag).Result()
	if errors.Is(err, goredis.Nil) {
		return false, c.rdb.ZRem(ctx, c.ks.unackedIndexOf(queue), tag).Err()
	}
	if err != nil {
		return false, err
	}
	envelope, exchange, routingKey, perr := parseUnacked(v)
	var queues []string
	if perr == nil {
		if exchange == "" {
			if routingKey != "" {
				queues = []string{routingKey}
			}
		} else {
			t, err := c.freshTable(ctx, exchange)
			if err != nil {
				return false, err
			}
			queues = t.Lookup(c.exchangeType(exchange), routingKey)
		}
	}
	if c.ks.sharded && (len(queues) != 1 || queues[0] != queue) {
		queues = nil
	}
	if len(queues) == 0 {
		// Kombu would drop it. Leave it for a restorer that can route it
		// (one that declared the exchange with its type), and say so once.
		c.mu.Lock()
		_, warned := c.unroutable[tag]
		if !warned {
			if len(c.unroutable) > 1000 {
				clear(c.unroutable)
			}
			c.unroutable[tag] = struct{}{}
		}
		c.mu.Unlock()
		if !warned {
			c.log.Error("redis: an unacknowledged message past its visibility timeout routes to no queue from here; left in the unacked hash",
				"tag", tag, "exchange", exchange, "exchange_type", c.exchangeType(exchange), "routing_key", routingKey)
		}
		return false, nil
	}
	payload := envelope
	if marked, err := virtual.MarkRedelivered([]byte(envelope)); err == nil {
		payload = string(marked)
	}
	step := stepFor(virtual.Priority([]byte(envelope)))
	keys := []string{c.ks.unackedOf(queue), c.ks.unackedIndexOf(queue)}
	for _, q := range queues {
		keys = append(keys, c.ks.bucket(q, step))
	}
	res, err := restoreScript.Run(ctx, c.rdb, keys, tag, v, ceil, payload).Int64()
	if err != nil {
		return false, err
	}
	return res == 1, nil
}

// freshTable reads an exchange's binding set now.
func (c *conn) freshTable(ctx context.Context, exchange string) (*routeTable, error) {
	members, err := c.rdb.SMembers(ctx, c.ks.binding(exchange)).Result()
	if err != nil {
		return nil, err
	}
	t := newRouteTable(members)
	c.routes.put(exchange, t)
	return t, nil
}

// parseUnacked splits an unacked hash value into the envelope text and the
// exchange and routing key Kombu restores it through.
func parseUnacked(v string) (envelope string, exchange, routingKey string, err error) {
	var parts []json.RawMessage
	if err := json.Unmarshal([]byte(v), &parts); err != nil || len(parts) != 3 {
		return "", "", "", fmt.Errorf("%w: unacked entry is not [message, exchange, routing_key]", virtual.ErrEnvelope)
	}
	if err := json.Unmarshal(parts[1], &exchange); err != nil {
		exchange = ""
	}
	if err := json.Unmarshal(parts[2], &routingKey); err != nil {
		routingKey = ""
	}
	return string(parts[0]), exchange, routingKey, nil
}
