package sqs

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxDeleteBatch is the most entries one DeleteMessageBatch takes.
const maxDeleteBatch = 10

// deleteCalls is how many DeleteMessageBatch calls run at once: past
// that, and as many batches again waiting, an Ack waits for one to finish
// (a slow SQS slows acks down instead of gathering deletes without end).
const deleteCalls = 16

// ackLinger is how long an ack waits for others of its queue before its
// DeleteMessageBatch goes with fewer than ten.
const ackLinger = 2 * time.Millisecond

// deleteBatch deletes a batch of one queue's acked messages (gathered by
// s.deletes, an ackbatch.Batcher keyed by queue URL: ten at most, ackLinger
// after the first, or on close) in one DeleteMessageBatch. An entry it did
// not delete (its Failed list, or missing from both lists), or every entry
// if the call failed, is deleted again on its own, and a failure of that is
// logged (deleteOne): the message comes back after its visibility timeout.
func (s *store) deleteBatch(batch []receipt) {
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
