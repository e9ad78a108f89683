package kombu

import (
	"errors"
	"fmt"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Sentinel errors. Test for them with errors.Is: the errors kombu-go returns
// wrap them with the details of what failed.
var (
	// ErrClosed: the connection, producer or consumer is closed.
	ErrClosed = transport.ErrClosed
	// ErrNotSupported: the transport cannot do what was asked (an exchange
	// type, priorities, TTLs, ...). kombu-go never ignores such a request.
	ErrNotSupported = transport.ErrNotSupported
	// ErrUnroutable: a mandatory message matched no queue.
	ErrUnroutable = transport.ErrUnroutable
	// ErrNacked: the broker refused to take responsibility for a message.
	ErrNacked = transport.ErrNacked
	// ErrEmpty: Queue.Get or a simple queue's GetNowait found no message,
	// or a simple queue's Get none before its context ended.
	ErrEmpty = transport.ErrEmpty
	// ErrNotFound: an exchange or queue does not exist.
	ErrNotFound = transport.ErrNotFound
	// ErrPrecondition: a declaration conflicts with what the broker has
	// (AMQP PRECONDITION_FAILED). The error names the entity and the
	// differing property.
	ErrPrecondition = transport.ErrPrecondition
	// ErrResourceLocked: an exclusive queue belongs to another connection.
	ErrResourceLocked = transport.ErrResourceLocked
	// ErrInUse: a conditional delete found the entity in use.
	ErrInUse = transport.ErrInUse
	// ErrAccessRefused: the broker refused the operation (AMQP
	// ACCESS_REFUSED): a reserved "amq." name, an internal exchange, the
	// default exchange, or missing permissions.
	ErrAccessRefused = transport.ErrAccessRefused
	// ErrInvalidURL: a broker URL could not be parsed. The *URLError says why.
	ErrInvalidURL = transport.ErrInvalidURL
	// ErrUnknownScheme: no transport is registered for the URL's scheme. The
	// error names the package to import.
	ErrUnknownScheme = transport.ErrUnknownScheme

	// ErrContentDisallowed: a message's content type is not in the accept list.
	ErrContentDisallowed = errors.New("kombu: content type not accepted")
	// ErrDecode: a message body could not be decompressed or deserialized.
	ErrDecode = codec.ErrDecode
	// ErrEncode: a body could not be serialized or compressed.
	ErrEncode = codec.ErrEncode
	// ErrUnknownSerializer: no serializer is registered under that name.
	ErrUnknownSerializer = errors.New("kombu: unknown serializer")
	// ErrUnknownCompression: no compression is registered under that name
	// or content type.
	ErrUnknownCompression = errors.New("kombu: unknown compression")
	// ErrMessageState: a message was settled (acked, rejected, requeued)
	// twice.
	ErrMessageState = errors.New("kombu: message already settled")
	// ErrLimitExceeded: a size or pool limit was reached.
	ErrLimitExceeded = codec.ErrLimitExceeded
	// ErrInvalidArgument: an argument out of its range, such as a pool limit
	// below 1 or a simple queue without a name. The error says which.
	ErrInvalidArgument = errors.New("kombu: invalid argument")
	// ErrAlreadyReleased: a pooled connection or producer was released
	// twice.
	ErrAlreadyReleased = errors.New("kombu: already released to its pool")
	// ErrStaleDelivery: a message delivered before the connection was lost
	// and recovered cannot be settled: the broker has put it back in its
	// queue, and its delivery tag could name another message now.
	ErrStaleDelivery = errors.New("kombu: stale delivery from an earlier connection")
	// ErrNoRoute: a message on a queue shared by several generated routes
	// matched none of them.
	ErrNoRoute = errors.New("kombu: no route for message")
	// ErrUnimplemented: a method of a generated Unimplemented…Handler ran,
	// so the service's handler does not implement that route; the error
	// names the route's proto method ("shop.v1.Shop.PlaceOrder"). Like any
	// handler error, the consumer logs it and rejects the message without
	// requeue (after WithMessageRetry's retries, if it has them), so it is
	// dead-lettered where its queue has a dead-letter exchange, ready to be
	// moved back once a release implements the method. That is what Celery
	// does with a task it has no registration for; requeueing instead would
	// hand the message straight back to the same consumer, forever. A
	// request/reply caller gets a *RemoteError with the error's text.
	ErrUnimplemented = errors.New("kombu: method not implemented")
)

// URLError says what is wrong with a broker URL; its URL has the password
// masked. errors.Is(err, ErrInvalidURL) reports true for it.
type URLError = transport.URLError

// BatchError says which messages of a batch failed when others were
// delivered (Batch.Send, and what drivers' PublishBatch return): Errs[i]
// is nil for each message the broker confirmed, in order, and why the
// others failed. errors.Is and errors.As look into every failure.
type BatchError = transport.BatchError

// OperationalError wraps a broker or network failure with the operation that
// failed and the broker's masked URL, like Kombu's OperationalError. Unwrap
// gives the transport's error, so errors.Is(err, ErrNotFound) and the like
// still work.
type OperationalError struct {
	Op  string // what was being done: "declare queue orders", "publish", ...
	URL string // the broker URL, password masked
	Err error
}

func (e *OperationalError) Error() string {
	return fmt.Sprintf("kombu: %s on %s: %v", e.Op, e.URL, e.Err)
}

func (e *OperationalError) Unwrap() error { return e.Err }

// RemoteError is a request/reply handler's error, returned to the caller
// that made the request.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string { return "kombu: remote handler failed: " + e.Message }

// Requeue wraps a handler error so that the consumer rejects the message
// with requeue instead of dead-lettering it: the broker will deliver it again.
// Requeue(nil) still requeues.
func Requeue(err error) error { return &requeueError{err: err} }

type requeueError struct{ err error }

func (e *requeueError) Error() string {
	if e.err == nil {
		return "kombu: requeue"
	}
	return "kombu: requeue: " + e.err.Error()
}

func (e *requeueError) Unwrap() error { return e.err }

func isRequeue(err error) bool {
	var r *requeueError
	return errors.As(err, &r)
}
