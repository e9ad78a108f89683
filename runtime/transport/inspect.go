package transport

import "context"

// QueueLister is implemented by connections that can list the queues their
// broker holds, for tools (the kombu command's queues verb). A broker that
// cannot enumerate its queues over the connection's protocol (AMQP 0-9-1
// has no such method) does not implement it; a queue's depth and consumers
// are then asked one queue at a time with a passive DeclareQueue.
type QueueLister interface {
	// ListQueues returns the queues the broker knows, in no particular
	// order. Consumers is -1 where the transport cannot tell.
	ListQueues(ctx context.Context) ([]QueueInfo, error)
}

// QueuePeeker is implemented by connections that can show a queue's ready
// messages without taking them: nothing is delivered, nothing marked
// redelivered, and consumers see the messages as they would have. A
// connection without it can only look by taking a message (Get) and
// requeueing it.
type QueuePeeker interface {
	// PeekQueue returns up to n of the queue's ready messages, the next to
	// be delivered first where the transport knows the order. The
	// deliveries have no Acknowledger and no Tag. A queue that does not
	// exist gives ErrNotFound where the broker can tell, no messages
	// otherwise.
	PeekQueue(ctx context.Context, queue string, n int) ([]*Delivery, error)
}
