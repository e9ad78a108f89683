package sqldb

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Waking consumers. A consumer whose queues are empty waits for a wake-up
// or its polling interval (polling_interval). Wake-ups come from two
// places:
//
//   - in this process, a publish through any connection to the same
//     tables wakes the consumers of its queue at once (the hub below);
//   - on PostgreSQL, a publish in another process sends NOTIFY (with the
//     queue's name) on the channel <tables>_go, which one connection per
//     process LISTENs to for every consumer on those tables.
//
// Python Kombu sends no NOTIFY, and MySQL and SQLite have none: consumers
// find what other processes write there by polling.

// hubs are the hubs of this process, one per database and set of tables.
var (
	hubsMu sync.Mutex
	hubs   = map[string]*hub{}
)

// hub fans wake-ups out to the consumers of one set of tables in this
// process.
type hub struct {
	key  string
	refs int

	mu       sync.Mutex
	watchers map[string]map[*watcher]struct{} // by queue

	// PostgreSQL: the listening connection, started with the first
	// watcher that wants it, stopped with the last store.
	listen      func(ctx context.Context) (*pgx.Conn, error) // nil: nothing to listen to
	channel     string
	log         *slog.Logger
	listening   bool
	stopListen  context.CancelFunc
	listenEnded chan struct{}
}

type watcher struct {
	ch     chan struct{}
	queues []string
}

// acquireHub returns the hub for key, made with listen (nil: no LISTEN)
// the first time.
func acquireHub(key, channel string, log *slog.Logger, listen func(ctx context.Context) (*pgx.Conn, error)) *hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[key]
	if h == nil {
		h = &hub{key: key, watchers: map[string]map[*watcher]struct{}{}, channel: channel, log: log, listen: listen}
		hubs[key] = h
	}
	h.refs++
	return h
}

// release gives a store's reference back; the last stops the listener.
func (h *hub) release() {
	hubsMu.Lock()
	h.refs--
	last := h.refs == 0
	if last {
		delete(hubs, h.key)
	}
	hubsMu.Unlock()
	if last {
		h.mu.Lock()
		stop, ended := h.stopListen, h.listenEnded
		h.mu.Unlock()
		if stop != nil {
			stop()
			<-ended
		}
	}
}

// watch registers a watcher of the queues.
func (h *hub) watch(queues []string) (<-chan struct{}, func()) {
	w := &watcher{ch: make(chan struct{}, 1), queues: queues}
	h.mu.Lock()
	for _, q := range queues {
		if h.watchers[q] == nil {
			h.watchers[q] = map[*watcher]struct{}{}
		}
		h.watchers[q][w] = struct{}{}
	}
	if h.listen != nil && !h.listening {
		h.listening = true
		ctx, cancel := context.WithCancel(context.Background())
		h.stopListen, h.listenEnded = cancel, make(chan struct{})
		go h.listenLoop(ctx, h.listenEnded)
	}
	h.mu.Unlock()
	return w.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, q := range w.queues {
			delete(h.watchers[q], w)
			if len(h.watchers[q]) == 0 {
				delete(h.watchers, q)
			}
		}
	}
}

// wake wakes the watchers of a queue ("" : of every queue).
func (h *hub) wake(queue string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if queue == "" {
		for _, ws := range h.watchers {
			for w := range ws {
				signal(w.ch)
			}
		}
		return
	}
	for w := range h.watchers[queue] {
		signal(w.ch)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listenLoop LISTENs on the hub's channel and wakes the watchers of each
// queue named in a notification. When the connection breaks it connects
// again (consumers poll meanwhile), and wakes everyone once it is back, for
// what it missed.
func (h *hub) listenLoop(ctx context.Context, ended chan struct{}) {
	defer close(ended)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := h.listen(ctx)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{h.channel}.Sanitize())
			if err == nil {
				backoff = 100 * time.Millisecond
				h.wake("")
				for {
					n, werr := conn.WaitForNotification(ctx)
					if werr != nil {
						err = werr
						break
					}
					h.wake(n.Payload)
				}
			}
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(closeCtx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("sqldb: LISTEN connection failed; consumers poll until it is back", "channel", h.channel, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
