package sqs

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxDeleteBatch is the most entries one DeleteMessageBatch takes.
const maxDeleteBatch = 10

// ackLinger is how long an ack waits for others of its queue before its
// DeleteMessageBatch goes with fewer than ten.
const ackLinger = 2 * time.Millisecond

// deleter deletes acked messages in DeleteMessageBatch calls of up to ten,
// per queue: a batch goes when ten are waiting, after linger, or on close,
// which sends what waits and waits for every call in flight. An entry a
// batch did not delete (its Failed list, or missing from both lists) is
// deleted again on its own, and a failure of that is logged (deleteOne):
// the message comes back after its visibility timeout.
type deleter struct {
	s      *store
	linger time.Duration

	mu      sync.Mutex
	pending map[string]*waiting // by queue URL
	closed  bool
	wg      sync.WaitGroup // batches in flight
}

// waiting are a queue's acks not yet sent.
type waiting struct {
	rs    []receipt
	timer *time.Timer
}

func newDeleter(s *store, linger time.Duration) *deleter {
	return &deleter{s: s, linger: linger, pending: map[string]*waiting{}}
}

// add queues r's delete; false once the deleter is closed (the caller
// deletes it itself then).
func (d *deleter) add(r receipt) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	w := d.pending[r.url]
	if w == nil {
		w = &waiting{}
		d.pending[r.url] = w
	}
	w.rs = append(w.rs, r)
	if len(w.rs) >= maxDeleteBatch {
		batch := w.rs
		w.rs = nil
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
		d.wg.Add(1)
		go d.send(batch)
		return true
	}
	if w.timer == nil {
		url := r.url
		w.timer = time.AfterFunc(d.linger, func() { d.due(url) })
	}
	return true
}

// due sends a queue's acks whose linger is over.
func (d *deleter) due(url string) {
	d.mu.Lock()
	w := d.pending[url]
	if w == nil || len(w.rs) == 0 {
		d.mu.Unlock()
		return
	}
	batch := w.rs
	w.rs, w.timer = nil, nil
	d.wg.Add(1)
	d.mu.Unlock()
	d.send(batch)
}

// close sends every waiting ack and waits for all batches in flight.
func (d *deleter) close() {
	d.mu.Lock()
	d.closed = true
	var batches [][]receipt
	for url, w := range d.pending {
		if w.timer != nil {
			w.timer.Stop()
		}
		if len(w.rs) > 0 {
			batches = append(batches, w.rs)
			d.wg.Add(1)
		}
		delete(d.pending, url)
	}
	d.mu.Unlock()
	for _, b := range batches {
		go d.send(b)
	}
	d.wg.Wait()
}

// send deletes a batch of one queue's messages in one DeleteMessageBatch;
// those it did not delete, or all if the call failed, are deleted one by
// one.
func (d *deleter) send(batch []receipt) {
	defer d.wg.Done()
	s := d.s
	defer func() {
		for _, r := range batch {
			s.settled(r) // its visibility no longer extended
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), receiveTimeout)
	defer cancel()
	if len(batch) == 1 {
		_ = s.deleteOne(ctx, batch[0])
		return
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, r := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.handle)}
	}
	out, err := s.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(batch[0].url), Entries: entries})
	deleted := make([]bool, len(batch))
	if err == nil {
		for _, e := range out.Successful {
			if i, err := strconv.Atoi(aws.ToString(e.Id)); err == nil && i >= 0 && i < len(batch) {
				deleted[i] = true
			}
		}
	} else {
		s.log.Debug("sqs: DeleteMessageBatch failed; deleting its messages one by one", "queue", batch[0].queue, "error", s.mask.wrap("DeleteMessageBatch", batch[0].queue, err))
	}
	// An entry in Failed, or in neither list (goaws 0.4 never fills
	// Failed), gets a DeleteMessage of its own, whose answer says what
	// happened and is logged when it failed.
	for i, r := range batch {
		if !deleted[i] {
			_ = s.deleteOne(ctx, r)
		}
	}
}
