//go:build !unix

package filesystem

import (
	"fmt"
	"os"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Kombu locks files with LockFileEx on Windows, which the standard library
// does not offer; kombu-go's filesystem transport needs flock(2).

const (
	lockShared    = 1
	lockExclusive = 2
)

var errNoFlock = fmt.Errorf("filesystem: file locks need flock(2), which this system lacks: %w", transport.ErrNotSupported)

func lock(f *os.File, how int) error { return errNoFlock }

func tryLock(f *os.File, how int) (bool, error) { return false, errNoFlock }

func flockAvailable() error { return errNoFlock }
