package filesystem

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// A message file is named as Kombu's filesystem transport names it:
//
//	<milliseconds>_<uuid4>.<queue>.msg
//
// where the milliseconds are Python's int(round(time.monotonic() * 1000)).
// Kombu's readers list the folder, sort the names as strings and take the
// first whose name contains ".<queue>.msg" anywhere, so that queue "b"
// also takes the files of queue "a.b". kombu-go parses the name instead:
// the queue is what lies between the first '.' after the uuid and the
// final ".msg", and the names are ordered by their milliseconds as a
// number, then as text.

// msgSuffix ends every message file's name.
const msgSuffix = ".msg"

// fileName returns the file name of a message of queue written at ms.
func fileName(ms int64, id, queue string) string {
	return strconv.FormatInt(ms, 10) + "_" + id + "." + queue + msgSuffix
}

// msgFile is a message file's name, parsed.
type msgFile struct {
	name  string
	ms    int64
	queue string
}

// parseName parses a message file's name. Names that are not of that form
// (temporary files, folders, whatever else lives in the folder) are not
// messages.
func parseName(name string) (msgFile, bool) {
	rest, ok := strings.CutSuffix(name, msgSuffix)
	if !ok {
		return msgFile{}, false
	}
	digits, rest, ok := strings.Cut(rest, "_")
	if !ok || digits == "" {
		return msgFile{}, false
	}
	ms, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || ms < 0 {
		return msgFile{}, false
	}
	id, queue, ok := strings.Cut(rest, ".")
	if !ok || id == "" || queue == "" {
		return msgFile{}, false
	}
	return msgFile{name: name, ms: ms, queue: queue}, true
}

// compareFiles orders message files oldest first.
func compareFiles(a, b msgFile) int {
	if c := cmp.Compare(a.ms, b.ms); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// checkName refuses a queue or exchange name that cannot be part of a file
// name.
func checkName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("filesystem: an empty %s name: %w", kind, transport.ErrNotSupported)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("filesystem: %s name %q: a file name cannot hold '/' or NUL: %w", kind, name, transport.ErrNotSupported)
	}
	return nil
}

// clock gives a store the milliseconds its file names start with: the
// system's monotonic clock, as Python's time.monotonic() reads it, so that
// files Go and Python write on one machine sort by when they were written.
// It never gives the same value twice: a store writing more than one file
// per millisecond runs ahead of the clock, so that its files keep the
// order it wrote them in.
type clock struct {
	base  int64     // the monotonic clock at start, in ms
	start time.Time // with Go's monotonic reading
	mu    sync.Mutex
	last  int64
}

func newClock() *clock {
	return &clock{base: monotonicMillis(), start: time.Now()}
}

func (c *clock) next() int64 {
	now := c.base + time.Since(c.start).Milliseconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now <= c.last {
		now = c.last + 1
	}
	c.last = now
	return now
}
