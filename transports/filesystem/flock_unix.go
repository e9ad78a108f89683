//go:build unix

package filesystem

import (
	"errors"
	"os"
	"syscall"
)

// Kombu locks message and control files with flock(2) (LOCK_EX to write,
// LOCK_SH to read); kombu-go does the same, so that it and Python wait for
// each other.

const (
	lockShared    = syscall.LOCK_SH
	lockExclusive = syscall.LOCK_EX
)

// lock takes a flock on f, waiting for it.
func lock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// tryLock takes a flock on f if nobody holds a conflicting one, and
// reports whether it did.
func tryLock(f *os.File, how int) (bool, error) {
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	}
	return false, err
}

// flockAvailable reports nil where flock(2) exists.
func flockAvailable() error { return nil }
