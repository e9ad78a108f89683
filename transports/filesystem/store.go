package filesystem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Where kombu-go keeps its own files, inside data_folder_in (see the
// package documentation).
const (
	stateDir      = ".kombu-go"
	takenDir      = "taken"      // <taker>/ and <taker>.lock
	unreadableDir = "unreadable" // files that are not Kombu envelopes
	tempPrefix    = ".kombu-go-"
	tempSuffix    = ".tmp"
)

// Timings.
const (
	// listFor is how long a store takes from a folder listing before it
	// lists the folder again: what others restored to the folder meanwhile
	// waits at most this long for its turn.
	listFor = time.Second
	// writeGrace is how old a file that is empty or not JSON must be
	// before it is taken for garbage rather than for a file Python is
	// still writing (Kombu creates the file before it locks and writes it).
	writeGrace = 2 * time.Second
	// recoverEvery is how often a store looks for messages taken by
	// connections that are gone.
	recoverEvery = 5 * time.Second
	// busyRetry is how long a file found being written is left alone.
	busyRetry = 100 * time.Millisecond
)

// store is a virtual.Store over folders.
type store struct {
	o   *options
	log *slog.Logger

	taker     string   // this store's id
	takenPath string   // <in>/.kombu-go/taken/<taker>
	lockFile  *os.File // <in>/.kombu-go/taken/<taker>.lock, locked while the store lives
	clock     *clock

	mu       sync.Mutex
	ready    map[string][]msgFile // ready files per queue, oldest first, from the last listing
	listedAt time.Time
	busy     map[string]time.Time // files being written, not to be tried again before then

	watch       *watchers
	stopRecover chan struct{}
	recovered   chan struct{} // closed when the recovery loop has returned
	delay       delayMover    // delay.go; stopped by stopRecover too
	closeOnce   sync.Once
}

var (
	_ virtual.Store       = (*store)(nil)
	_ virtual.Waker       = (*store)(nil)
	_ virtual.Quarantiner = (*store)(nil)
	_ virtual.Delayer     = (*store)(nil)
)

// receipt is a taken message: its file, under the taker's folder, and
// the content it was taken with.
type receipt struct {
	name     string
	envelope []byte
}

// openStore checks the folders, takes a taker's folder and lock of its own
// and restores what connections that are gone left taken.
func openStore(o *options, log *slog.Logger) (*store, error) {
	if err := flockAvailable(); err != nil {
		return nil, err
	}
	if err := checkFolders(o); err != nil {
		return nil, err
	}
	base := filepath.Join(o.in, stateDir, takenDir)
	if err := os.MkdirAll(base, 0o777); err != nil {
		return nil, fmt.Errorf("filesystem: data_folder_in %s: cannot make kombu-go's folder in it: %w", o.in, err)
	}
	s := &store{
		o:           o,
		log:         log,
		taker:       virtual.NewDeliveryTag(),
		clock:       newClock(),
		ready:       map[string][]msgFile{},
		busy:        map[string]time.Time{},
		stopRecover: make(chan struct{}),
		recovered:   make(chan struct{}),
		delay:       newDelayMover(),
	}
	s.watch = newWatchers(o.in, s.addReady)
	s.takenPath = filepath.Join(base, s.taker)
	// The lock is taken under a temporary name and then renamed into
	// place, so that a recovering store never finds the lock file of a
	// live taker unlocked.
	tmp := filepath.Join(base, tempPrefix+s.taker+tempSuffix)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return nil, fmt.Errorf("filesystem: %s: %w", base, err)
	}
	if err := lock(f, lockExclusive); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("filesystem: lock %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.takenPath+".lock"); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("filesystem: %s: %w", base, err)
	}
	s.lockFile = f
	if err := os.Mkdir(s.takenPath, 0o777); err != nil {
		s.release()
		return nil, fmt.Errorf("filesystem: %s: %w", base, err)
	}
	s.recoverAbandoned()
	go s.recoverLoop()
	go s.delayLoop()
	return s, nil
}

// checkFolders checks that the data folders exist and can be written to,
// and makes the control folder (as Kombu does) if it is missing.
func checkFolders(o *options) error {
	for _, f := range []struct{ option, path string }{
		{"data_folder_in", o.in}, {"data_folder_out", o.out}, {"processed_folder", o.processed},
	} {
		if f.option == "processed_folder" && !o.storeProcessed {
			continue
		}
		if err := checkFolder(f.option, f.path); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.control, 0o777); err != nil {
		return fmt.Errorf("filesystem: control_folder %s: %w", o.control, err)
	}
	return checkFolder("control_folder", o.control)
}

// checkFolder checks that path is a folder this process can write to, by
// writing to it: permissions alone do not tell (a read-only mount, root).
func checkFolder(option, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("filesystem: %s %s does not exist (Kombu's filesystem transport needs its folders made beforehand)", option, path)
	case err != nil:
		return fmt.Errorf("filesystem: %s %s: %w", option, path, err)
	case !fi.IsDir():
		return fmt.Errorf("filesystem: %s %s is not a folder", option, path)
	}
	f, err := os.CreateTemp(path, tempPrefix+"probe-*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("filesystem: %s %s is not writable: %w", option, path, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// DeclareQueue checks the name: a queue exists as its files.
func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	return checkName("queue", queue)
}

// list reads the names of the ready message files in data_folder_in.
func (s *store) list() ([]msgFile, error) {
	d, err := os.Open(s.o.in)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// ReadDir, not Readdirnames: the entry's type comes with its name (no
	// stat), and a folder named like a message is not one: taking it would
	// rename it away and back at every poll.
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	files := make([]msgFile, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if f, ok := parseName(e.Name()); ok {
			files = append(files, f)
		}
	}
	return files, nil
}

// Size counts the queue's files.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	if err := checkName("queue", queue); err != nil {
		return 0, false, err
	}
	files, err := s.list()
	if err != nil {
		return 0, false, err
	}
	n := 0
	for _, f := range files {
		if f.queue == queue {
			n++
		}
	}
	return n, n > 0, nil
}

// Purge removes the queue's files.
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	if err := checkName("queue", queue); err != nil {
		return 0, err
	}
	files, err := s.list()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		if f.queue != queue {
			continue
		}
		switch err := os.Remove(filepath.Join(s.o.in, f.name)); {
		case err == nil:
			n++
		case !errors.Is(err, fs.ErrNotExist): // taken meanwhile
			return n, err
		}
	}
	s.mu.Lock()
	delete(s.ready, queue)
	s.mu.Unlock()
	return n, nil
}

// DeleteQueue removes the queue's files and its rows from every table in
// the control folder.
func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	n, err := s.Purge(ctx, queue)
	if err != nil {
		return n, err
	}
	return n, s.unbindEverywhere(queue)
}

// Put writes the message's file to data_folder_out: to a temporary name
// first, then renamed, so that no reader ever sees half a message.
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	if err := checkName("queue", m.Queue); err != nil {
		return err
	}
	f := msgFile{ms: s.clock.next(), queue: m.Queue}
	f.name = fileName(f.ms, virtual.NewDeliveryTag(), m.Queue)
	if err := writeFile(s.o.out, f.name, m.Envelope); err != nil {
		return err
	}
	if s.o.out == s.o.in {
		s.addReady(f)
		s.watch.notify(m.Queue)
	}
	return nil
}

// writeFile writes a file atomically: to a temporary file in the same
// folder, renamed over name once written. The file's mode is 0666 less the
// umask, as Python's open() makes it, so that Python peers of other users
// can read what Go writes where the umask lets them.
func writeFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, tempPrefix+virtual.NewDeliveryTag()+tempSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// addReady records a file this store put or restored in its listing.
func (s *store) addReady(f msgFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := s.ready[f.queue]
	i, found := slices.BinarySearchFunc(files, f, compareFiles)
	if !found {
		s.ready[f.queue] = slices.Insert(files, i, f)
	}
}

// next returns the oldest file of the queue in the listing, listing the
// folder again when the listing has none or is old, at most once per
// call (relisted says whether this call did).
func (s *store) next(queue string, relisted *bool) (msgFile, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !*relisted && (len(s.ready[queue]) == 0 || time.Since(s.listedAt) > listFor) {
		*relisted = true
		files, err := s.list()
		if err != nil {
			return msgFile{}, false, err
		}
		ready := map[string][]msgFile{}
		for _, f := range files {
			ready[f.queue] = append(ready[f.queue], f)
		}
		for _, fs := range ready {
			slices.SortFunc(fs, compareFiles)
		}
		s.ready, s.listedAt = ready, time.Now()
	}
	files := s.ready[queue]
	for i, f := range files {
		if until, ok := s.busy[f.name]; ok {
			if time.Now().Before(until) {
				continue
			}
			delete(s.busy, f.name)
		}
		s.ready[queue] = slices.Delete(files, i, i+1)
		return f, true, nil
	}
	return msgFile{}, false, nil
}

// retryLater keeps a file being written from being tried again for a while:
// putting it back announces it again, and would make its consumers try it
// at once, again and again.
func (s *store) retryLater(f msgFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.busy) > 10000 {
		clear(s.busy)
	}
	s.busy[f.name] = time.Now().Add(busyRetry)
	s.ready[f.queue] = append(s.ready[f.queue], f) // where next finds it again once it may
	slices.SortFunc(s.ready[f.queue], compareFiles)
}

// errBusy reports a file someone is still writing.
var errBusy = errors.New("being written")

// Take renames the queue's oldest file into this store's taker folder,
// which only one taker's rename can do, and reads it. A file that is
// locked, or young and not yet JSON, is being written by Python: it is
// put back and the next one taken.
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	if err := checkName("queue", queue); err != nil {
		return virtual.Taken{}, err
	}
	relisted := false
	for {
		if err := ctx.Err(); err != nil {
			return virtual.Taken{}, err
		}
		f, ok, err := s.next(queue, &relisted)
		if err != nil {
			return virtual.Taken{}, err
		}
		if !ok {
			return virtual.Taken{}, fmt.Errorf("filesystem: queue %q: %w", queue, transport.ErrEmpty)
		}
		src, dst := filepath.Join(s.o.in, f.name), filepath.Join(s.takenPath, f.name)
		if err := os.Rename(src, dst); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // taken by someone else, or purged
			}
			return virtual.Taken{}, err
		}
		data, err := readTaken(dst)
		if errors.Is(err, errBusy) {
			if err := os.Rename(dst, src); err != nil {
				return virtual.Taken{}, fmt.Errorf("put back %s, which is being written: %w", f.name, err)
			}
			s.retryLater(f)
			continue
		}
		if err != nil {
			s.giveBack(dst, src)
			return virtual.Taken{}, err
		}
		return virtual.Taken{Envelope: data, Receipt: &receipt{name: f.name, envelope: data}}, nil
	}
}

// readTaken reads a taken file under a shared lock, as Kombu reads one.
// A file still locked by its writer, or young and not yet JSON, is
// errBusy.
func readTaken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ok, err := tryLock(f, lockShared)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBusy
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || !json.Valid(data) {
		if fi, err := f.Stat(); err == nil && time.Since(fi.ModTime()) < writeGrace {
			return nil, errBusy
		}
	}
	return data, nil
}

// giveBack renames a taken file back to where it was, after a failure.
func (s *store) giveBack(taken, ready string) {
	if err := os.Rename(taken, ready); err != nil {
		s.log.Warn("filesystem: a taken file could not be put back; it is restored when this connection closes or dies",
			"file", taken, "error", err)
	}
}

// Ack deletes the taken file, or with store_processed moves it to
// processed_folder, as Kombu does at its take.
func (s *store) Ack(ctx context.Context, r virtual.Receipt) error {
	rc := r.(*receipt)
	path := filepath.Join(s.takenPath, rc.name)
	if !s.o.storeProcessed {
		return os.Remove(path)
	}
	return moveFile(path, filepath.Join(s.o.processed, rc.name))
}

// moveFile renames a file, or copies and removes it where it crosses file
// systems (processed_folder may be elsewhere, as Kombu's shutil.move
// allows).
func moveFile(from, to string) error {
	err := os.Rename(from, to)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Dir(to), filepath.Base(to), data); err != nil {
		return err
	}
	return os.Remove(from)
}

// Restore renames the taken file back to data_folder_in under its own
// name, so that it takes its old place among the queue's files, with the
// envelope given as its content.
func (s *store) Restore(ctx context.Context, r virtual.Receipt, envelope []byte) error {
	rc := r.(*receipt)
	if !bytes.Equal(envelope, rc.envelope) {
		if err := writeFile(s.takenPath, rc.name, envelope); err != nil {
			return err
		}
	}
	if err := os.Rename(filepath.Join(s.takenPath, rc.name), filepath.Join(s.o.in, rc.name)); err != nil {
		return err
	}
	if f, ok := parseName(rc.name); ok {
		s.addReady(f)
		s.watch.notify(f.queue)
	}
	return nil
}

// Quarantine moves a taken file that is not a Kombu envelope to
// data_folder_in/.kombu-go/unreadable, where it stays for a person to
// look at.
func (s *store) Quarantine(ctx context.Context, r virtual.Receipt, reason error) error {
	rc := r.(*receipt)
	dir := filepath.Join(s.o.in, stateDir, unreadableDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	to := filepath.Join(dir, rc.name)
	if err := os.Rename(filepath.Join(s.takenPath, rc.name), to); err != nil {
		return err
	}
	s.log.Warn("filesystem: a message file is not a Kombu envelope; moved aside", "file", to, "reason", reason)
	return nil
}

// Watch wakes the consumer when a message file of one of the queues may
// have appeared in data_folder_in.
func (s *store) Watch(queues []string) (<-chan struct{}, func()) {
	return s.watch.add(queues)
}

// Close stops the recovery loop and gives up the taker's folder and lock.
// The connection has acked or restored what it took; what it could not is
// still in the folder, which the next recovery of any store restores.
func (s *store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopRecover)
		<-s.recovered
		<-s.delay.done
		s.watch.close()
		s.release()
	})
	return nil
}

// release removes the taker's folder if it is empty, and its lock file
// with it, and unlocks.
func (s *store) release() {
	if err := os.Remove(s.takenPath); err == nil || errors.Is(err, fs.ErrNotExist) {
		os.Remove(s.takenPath + ".lock")
	} else {
		s.log.Warn("filesystem: messages this connection took are left in its folder; another connection restores them",
			"folder", s.takenPath, "error", err)
	}
	s.lockFile.Close()
}

// isTemp reports whether a name is one of kombu-go's temporary files.
func isTemp(name string) bool {
	return strings.HasPrefix(name, tempPrefix) && strings.HasSuffix(name, tempSuffix)
}
