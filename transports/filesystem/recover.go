package filesystem

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Recovery. Kombu moves a file it takes to its processed folder or the
// system's temporary folder, reads it and deletes it: a consumer that dies
// before its handler has finished loses the message. kombu-go keeps what a
// connection took in data_folder_in/.kombu-go/taken/<taker>/ while the
// connection holds an exclusive flock on .../taken/<taker>.lock. The
// kernel drops that lock when the process ends, however it ends; every
// store looks for lock files it can lock (their takers are gone) when it
// opens and every few seconds after, and renames their files back into
// data_folder_in, marked redelivered, before it removes the folder and the
// lock file. A taker's folder without a lock file (a recovery that stopped
// half-way) is recovered the same way.

// recoverLoop recovers abandoned messages every recoverEvery until the
// store closes.
func (s *store) recoverLoop() {
	defer close(s.recovered)
	t := time.NewTicker(recoverEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopRecover:
			return
		case <-t.C:
			s.recoverAbandoned()
		}
	}
}

// recoverAbandoned restores the messages of every taker that is gone.
func (s *store) recoverAbandoned() {
	base := filepath.Join(s.o.in, stateDir, takenDir)
	d, err := os.Open(base)
	if err != nil {
		s.log.Warn("filesystem: cannot look for messages left by connections that are gone", "folder", base, "error", err)
		return
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		s.log.Warn("filesystem: cannot look for messages left by connections that are gone", "folder", base, "error", err)
		return
	}
	for _, name := range names {
		if isTemp(name) {
			continue // a lock file not yet in place: its taker is starting
		}
		taker := strings.TrimSuffix(name, ".lock")
		if taker == s.taker || taker != name && contains(names, taker) {
			continue // ours, or a lock file whose folder is handled under its own name
		}
		s.recoverTaker(base, taker)
	}
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// recoverTaker restores a taker's messages if its lock can be taken (or it
// has none), then removes its folder and lock file.
func (s *store) recoverTaker(base, taker string) {
	dir, lockPath := filepath.Join(base, taker), filepath.Join(base, taker+".lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No lock file: a recovery that stopped half-way, or one just
		// finished by another store (then the folder is gone too).
	case err != nil:
		s.log.Warn("filesystem: cannot check whether a connection is gone", "lock", lockPath, "error", err)
		return
	default:
		defer f.Close()
		ok, err := tryLock(f, lockExclusive)
		if err != nil {
			s.log.Warn("filesystem: cannot check whether a connection is gone", "lock", lockPath, "error", err)
			return
		}
		if !ok {
			return // alive
		}
	}
	if !s.restoreFolder(dir) {
		return // the lock file stays, for the next recovery to try again
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("filesystem: cannot remove the folder of a connection that is gone", "folder", dir, "error", err)
		return
	}
	if f != nil {
		os.Remove(lockPath)
	}
}

// restoreFolder renames every message file of a gone taker's folder back to
// data_folder_in, marked redelivered, and reports whether it restored
// them all.
func (s *store) restoreFolder(dir string) bool {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		s.log.Warn("filesystem: cannot read the folder of a connection that is gone", "folder", dir, "error", err)
		return false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		s.log.Warn("filesystem: cannot read the folder of a connection that is gone", "folder", dir, "error", err)
		return false
	}
	all := true
	for _, name := range names {
		path := filepath.Join(dir, name)
		if isTemp(name) {
			os.Remove(path)
			continue
		}
		if err := s.restoreFile(dir, name); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // restored by another store meanwhile
				s.log.Warn("filesystem: cannot restore a message taken by a connection that is gone", "file", path, "error", err)
				all = false
			}
			continue
		}
		s.log.Warn("filesystem: restored a message taken by a connection that is gone", "file", name)
	}
	return all
}

// restoreFile marks a gone taker's file redelivered (rewriting it in its
// folder, so that a recovery that stops half-way leaves it whole) and
// renames it back to data_folder_in. A file that is not an envelope goes
// back as it is: the consumer that takes it sets it aside.
func (s *store) restoreFile(dir, name string) error {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if marked, err := virtual.MarkRedelivered(data); err == nil {
		if err := writeFile(dir, name, marked); err != nil {
			return err
		}
	}
	if err := os.Rename(path, filepath.Join(s.o.in, name)); err != nil {
		return err
	}
	if f, ok := parseName(name); ok {
		s.addReady(f)
		s.watch.notify(f.queue)
	}
	return nil
}
