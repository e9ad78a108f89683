package virtual

import (
	"context"
	"time"
)

// Delayer is implemented by a store that can hold a message back:
// delayed delivery (transport.FeatureDelay, which the connection then
// claims). The connection routes a delayed message when it is published,
// as any message, and hands each queue's copy to PutDelayed instead of
// Put. A connection over a store without it refuses a delayed publish with
// transport.ErrNotSupported.
type Delayer interface {
	// PutDelayed stores m to become a ready message of m.Queue once delay
	// has passed, as Put would store it then. Until then no Take, Size or
	// Purge of any process (Python Kombu's included) sees it; after, it
	// must become ready within a second, while any connection to the
	// store is open. It returns once the message is stored as durably as
	// Put stores messages.
	PutDelayed(ctx context.Context, m Message, delay time.Duration) error
}
