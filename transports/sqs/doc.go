// Package sqs is Kombu's Amazon SQS transport for kombu-go, registered as
// the "sqs" scheme: Go and Python processes (Kombu, Celery) share SQS
// queues both ways, with Kombu's queue names and message bodies. It is a
// module of its own (github.com/kombu-go/kombu/transports/sqs), so that
// only programs that import it download the AWS SDK.
//
// Import it for its side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/sqs"
//
//	conn, err := kombu.Dial(ctx, "sqs://?region=eu-west-1&queue_name_prefix=prod-")
//
// # URLs
//
// sqs://[ACCESS_KEY_ID:SECRET_ACCESS_KEY@][host[:port]][?options]
//
// Without credentials the AWS environment's are used, as boto3 finds them
// for Kombu (AWS_ACCESS_KEY_ID, shared files, the instance's or task's
// role). A secret holding '/' or '+' is percent-encoded (%2F, %2B). A host
// names the endpoint, as Kombu's endpoint_url does: http://host:port,
// https with is_secure=true; without one the region's AWS endpoint is used.
// The secret never appears in URL(), logs or errors.
//
// Options, Kombu's transport options as query parameters:
//
//   - region: the AWS region (the environment's, else us-east-1, Kombu's);
//   - queue_name_prefix: put before every queue name, as Kombu does;
//   - visibility_timeout: seconds, for the queues it creates and the
//     messages it receives (default 1800, Kombu's);
//   - polling_interval: seconds between looks at an empty queue (default
//     1, Kombu's);
//   - wait_time_seconds: accepted and checked for URLs shared with Python;
//     kombu-go consumers poll (short receives every polling_interval)
//     rather than long-poll;
//   - sqs-base64-encoding: base64 message bodies (default true, Kombu's);
//   - is_secure: https to the URL's host;
//   - max_message_size: the largest body, as sent, in bytes (default
//     262144, SQS's historic limit; raise it to 1048576 for queues that
//     allow it);
//   - emulator=goaws: mend the goaws emulator's quirks (it counts messages
//     in flight as ready, and answers a stale receipt with QueueExists).
//
// # Layout
//
// A queue's SQS name is Kombu's: queue_name_prefix and the name, with
// every ASCII punctuation character but '-' and '_' turned into '_' and
// '.' into '-', a ".fifo" suffix kept ("celery@h.x" is "celery_h-x"). A
// name that is still longer than SQS's 80 characters (which SQS refuses to
// Kombu) is cut and ends in 16 hex digits of its SHA-256; a name with
// characters SQS refuses fails with transport.ErrNotSupported naming it,
// before any request. Queues are created on first use, with Kombu's
// attributes (VisibilityTimeout; FifoQueue for ".fifo").
//
// A message body is Kombu's JSON envelope (package virtual), base64-encoded
// unless sqs-base64-encoding is off; bodies that are not base64 are read
// as they are, as Kombu reads them. A FIFO queue's messages carry the
// message group id "default" and a uuid4 deduplication id, as Kombu's,
// unless the message's properties or headers name MessageGroupId or
// MessageDeduplicationId. A body larger than max_message_size is refused
// before it is sent, with an error matching kombu.ErrLimitExceeded.
//
// # Acknowledgements
//
// A delivery's receipt is SQS's receipt handle: Ack deletes the message,
// a requeue sets its visibility to 0 (SQS cannot rewrite a message, so the
// redelivered flag comes from ApproximateReceiveCount, and from what this
// process itself put back). While a message is unsettled the transport
// extends its visibility every third of visibility_timeout, so a handler
// longer than the timeout is not given the message to a second consumer
// meanwhile; a process that dies stops extending it, and SQS gives the
// message to another consumer once its visibility runs out. A consumer
// with a prefetch receives up to ten messages a request, as Kombu's. A receive
// whose caller gave up has its messages made visible again at once when
// its answer comes. A message that is not a Kombu envelope is moved to the
// queue "<name>-quarantine" (made on demand) and logged, not lost.
//
// A batch of messages (kombu.Batch, a connection's PublishBatch) is sent
// with SendMessageBatch: per queue, in order, up to ten messages and 256
// KiB of bodies a request (a message bigger than that, which
// max_message_size allowed, goes alone). A message over
// max_message_size, or one SQS refuses (an entry of the answer's Failed
// list, or one it lists nowhere), fails alone with its own error in the
// *BatchError; the others are sent. Python Kombu sends one message per
// call.
//
// Acks are deleted in batches: Ack queues the message's receipt (its
// visibility is extended until the delete has landed); a DeleteMessageBatch per queue goes
// when ten wait, or 2 ms after the first, and closing the connection sends
// what waits and waits for it. Sixteen DeleteMessageBatch calls run at
// once at most; while sixteen more batches wait behind them an Ack waits
// too (or fails with its context), so a slow SQS slows acks down rather
// than gathering deletes. Ack returns once the receipt is queued, not
// once SQS has deleted the message, as Google's Pub/Sub Go client acks: a
// consumer that settles its messages one after another in one goroutine
// would otherwise wait for a round trip (plus the linger) per message, and
// batching would gain it nothing. Nothing is lost by it: a delete that
// fails (an entry a batch did not delete is retried alone, and a failure
// of that is logged with the message id) leaves the message in its queue,
// and SQS delivers it again once its visibility timeout runs out: the
// at-least-once of an ack that never reached SQS. Python Kombu deletes one
// message per call.
//
// Exchanges and bindings live in the process's memory, as in Kombu (SQS
// has nowhere to keep them; every Kombu process declares its own): direct
// and topic exchanges route as Kombu's do; fanout exchanges reach the
// queues bound in this process only (Kombu 5.5 has no fanout on SQS).
// Dead-lettering with x-dead-letter-exchange is emulated by the
// connection. An SQS redrive policy set on the queue (by its owner: the
// transport does not set one) works as well, as with Python Kombu: a
// message rejected with requeue is made visible again at once and each
// receive counts, so after maxReceiveCount deliveries SQS moves it to the
// deadLetterTargetArn queue (a consumer that dies counts the same way, once
// the visibility runs out). A reject without requeue and without
// x-dead-letter-exchange deletes the message, as Kombu's does, so SQS
// never dead-letters it. (goaws, the emulator of the tests, delivers the
// message maxReceiveCount+1 times before it moves it.) Priorities and
// TTLs are refused with ErrNotSupported.
//
// # SDK versions
//
// The module requires github.com/aws/aws-sdk-go-v2/service/sqs v1.26.0
// and the SDK core v1.22.1: the last versions that speak SQS's query
// protocol, the only one goaws (the emulator the tests run in process)
// answers. Newer versions speak the JSON protocol, which AWS prefers;
// the transport works with both (it knows both protocols' error codes).
// A program should upgrade them:
//
//	go get github.com/aws/aws-sdk-go-v2/service/sqs@latest
//
// and must when another AWS package brings in a newer SDK core, which the
// old service/sqs does not run with: the first request then fails with an
// error saying so.
package sqs
