package filesystem

import "sync"

// watchers are the consumers waiting for files of their queues. A store
// wakes them for the files it puts or restores itself, and, where the
// system tells of files others create (inotify on Linux, see
// watch_linux.go), for every message file that appears in data_folder_in.
// Elsewhere consumers of other processes' files poll.
type watchers struct {
	folder string
	seen   func(msgFile) // records a file the system told of, before the wake-up
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	os     *osWatch // nil until the first consumer, or where there is none
	closed bool
}

type watcher struct {
	queues map[string]bool
	ch     chan struct{}
}

func newWatchers(folder string, seen func(msgFile)) *watchers {
	return &watchers{folder: folder, seen: seen, subs: map[*watcher]struct{}{}}
}

// add registers a consumer of the queues.
func (ws *watchers) add(queues []string) (<-chan struct{}, func()) {
	w := &watcher{queues: map[string]bool{}, ch: make(chan struct{}, 1)}
	for _, q := range queues {
		w.queues[q] = true
	}
	ws.mu.Lock()
	if !ws.closed {
		ws.subs[w] = struct{}{}
		if ws.os == nil {
			ws.os = startOSWatch(ws.folder, ws)
		}
	}
	ws.mu.Unlock()
	return w.ch, func() {
		ws.mu.Lock()
		delete(ws.subs, w)
		ws.mu.Unlock()
	}
}

// appeared records a message file the system says appeared in the folder,
// so that the next take finds it without listing the folder, and wakes
// its queue's consumers.
func (ws *watchers) appeared(f msgFile) {
	ws.seen(f)
	ws.notify(f.queue)
}

// notify wakes the consumers of the queue; "" wakes every consumer.
func (ws *watchers) notify(queue string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.subs {
		if queue == "" || w.queues[queue] {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}

func (ws *watchers) close() {
	ws.mu.Lock()
	ws.closed = true
	o := ws.os
	ws.mu.Unlock()
	if o != nil {
		o.close()
	}
}
