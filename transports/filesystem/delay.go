package filesystem

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Delayed delivery (transport.FeatureDelay). Kombu's filesystem transport
// has none; the layout is kombu-go's. A delayed message is routed when it
// is published, as any message, and each queue's copy is written, as a
// message file would be, into
//
//	data_folder_out/.kombu-go/delayed/<due>_<uuid4>.<queue>.msg
//
// where <due> is the wall-clock time it is due, in milliseconds since the
// Unix epoch (not the monotonic clock of message files: a delayed message
// must keep its time across reboots). Kombu reads only the files directly
// in the data folder, so no Python consumer sees the message before it is
// due. Every kombu-go connection moves the due files of its data folders'
// delayed folders (in and out) into the data folder by a rename, under a
// message file's name with the monotonic milliseconds of the move, so that
// it queues behind what was written before: a rename succeeds for one
// mover only, so a message is moved once however many connections and
// processes move. A connection lists the delayed folders every second, or
// sooner when the next file is due sooner, so a message arrives within a
// second of its time while any kombu-go process with the folder is running;
// with none, it waits in the delayed folder, which survives the processes
// as every message file does.

// delayedDir holds the delayed messages, inside a data folder's stateDir.
const delayedDir = "delayed"

// delayLookEvery bounds how long a store sleeps between listings of the
// delayed folders.
const delayLookEvery = time.Second

// delayMover is a store's mover of due delayed files.
type delayMover struct {
	wake chan struct{}
	done chan struct{} // closed when the loop has returned
}

func newDelayMover() delayMover {
	return delayMover{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// PutDelayed writes the message into data_folder_out's delayed folder,
// due after delay.
func (s *store) PutDelayed(ctx context.Context, m virtual.Message, delay time.Duration) error {
	if err := checkName("queue", m.Queue); err != nil {
		return err
	}
	dir := filepath.Join(s.o.out, stateDir, delayedDir)
	// Rounded up to the millisecond: never due before its time.
	due := (time.Now().Add(delay).UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	name := fileName(due, virtual.NewDeliveryTag(), m.Queue)
	err := writeFile(dir, name, m.Envelope)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o777); err == nil {
			err = writeFile(dir, name, m.Envelope)
		}
	}
	if err != nil {
		return err
	}
	select {
	case s.delay.wake <- struct{}{}: // a short delay may be due before the next look
	default:
	}
	return nil
}

// delayLoop moves due delayed files until the store closes.
func (s *store) delayLoop() {
	defer close(s.delay.done)
	for {
		t := time.NewTimer(s.moveDue())
		select {
		case <-s.stopRecover:
			t.Stop()
			return
		case <-s.delay.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// moveDue moves the due files of both data folders' delayed folders and
// returns how long until the next is due, at most delayLookEvery.
func (s *store) moveDue() time.Duration {
	next := delayLookEvery
	folders := []string{s.o.in}
	if s.o.out != s.o.in {
		folders = append(folders, s.o.out)
	}
	for _, folder := range folders {
		dir := filepath.Join(folder, stateDir, delayedDir)
		names, err := readNames(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("filesystem: cannot list the delayed messages", "folder", dir, "error", err)
			}
			continue
		}
		now := time.Now().UnixMilli()
		for _, name := range names {
			f, ok := parseName(name)
			if !ok {
				continue
			}
			if wait := time.Duration(f.ms-now) * time.Millisecond; wait > 0 {
				next = min(next, wait)
				continue
			}
			ready := msgFile{ms: s.clock.next(), queue: f.queue}
			ready.name = fileName(ready.ms, virtual.NewDeliveryTag(), f.queue)
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(folder, ready.name)); err != nil {
				if !errors.Is(err, fs.ErrNotExist) { // another mover was first
					s.log.Warn("filesystem: cannot move a due delayed message", "file", filepath.Join(dir, name), "error", err)
				}
				continue
			}
			if folder == s.o.in {
				s.addReady(ready)
				s.watch.notify(f.queue)
			}
		}
	}
	return next
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}
