//go:build !linux

package filesystem

import "time"

// monotonicMillis is the wall clock in milliseconds where the standard
// library cannot read the clock Python's time.monotonic() reads: files
// sort by when they were written only among kombu-go's writers.
func monotonicMillis() int64 { return time.Now().UnixMilli() }
