package transport

import "errors"

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
