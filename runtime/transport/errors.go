package transport

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors shared by the runtime and drivers. Package kombu re-exports
// each one under the same name, so callers test them with errors.Is against
// kombu.ErrX without importing this package.
var (
	ErrClosed         = errors.New("kombu: connection closed")
	ErrNotSupported   = errors.New("kombu: not supported by this transport")
	ErrUnroutable     = errors.New("kombu: message unroutable")
	ErrNacked         = errors.New("kombu: message nacked by the broker")
	ErrEmpty          = errors.New("kombu: queue empty")
	ErrNotFound       = errors.New("kombu: entity not found")
	ErrPrecondition   = errors.New("kombu: declaration conflicts with the existing entity")
	ErrResourceLocked = errors.New("kombu: resource locked by another connection")
	ErrInvalidURL     = errors.New("kombu: invalid broker URL")
	ErrUnknownScheme  = errors.New("kombu: unknown transport scheme")
	ErrInUse          = errors.New("kombu: entity in use")
	ErrAccessRefused  = errors.New("kombu: access refused")
	// ErrLimitExceeded: a size or count over a limit, such as a message
	// body larger than its broker takes (SQS's 256 KiB), refused before it
	// is sent. It is the value of codec.ErrLimitExceeded and
	// kombu.ErrLimitExceeded too, so that errors.Is matches all three.
	ErrLimitExceeded = errors.New("kombu: limit exceeded")
)

// BatchError is a PublishBatch error that says which messages of the batch
// failed, so that a caller relaying messages (kombu.Shovel, an outbox)
// settles each one by its own fate: Errs[i] is nil for the i-th message
// of the batch if the broker confirmed it (or, with neither Confirm nor
// Mandatory set, took it), and why it failed otherwise, or why its fate
// is unknown (a confirm that never came). errors.Is and errors.As look
// into every failure.
type BatchError struct {
	Errs []error // one per message of the batch, in order
}

// NewBatchError returns a *BatchError for a batch whose per-message
// errors are errs, or nil when every one is nil.
func NewBatchError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// maxBatchErrorsShown bounds the failures Error lists: Errs has them all.
const maxBatchErrorsShown = 10

// Error says how many messages failed and why, naming each by its index
// ("message 3 of 10"), the first ten at most.
func (e *BatchError) Error() string {
	failed := e.Failed()
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d messages in the batch failed: ", failed, len(e.Errs))
	shown := 0
	for i, err := range e.Errs {
		if err == nil {
			continue
		}
		if shown == maxBatchErrorsShown {
			fmt.Fprintf(&b, "; and %d more", failed-shown)
			break
		}
		if shown > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "message %d of %d: %v", i, len(e.Errs), err)
		shown++
	}
	return b.String()
}

// Failed returns how many messages failed.
func (e *BatchError) Failed() int {
	n := 0
	for _, err := range e.Errs {
		if err != nil {
			n++
		}
	}
	return n
}

// Unwrap returns the failures, for errors.Is and errors.As.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Errs))
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
