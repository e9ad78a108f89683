package filesystem

import (
	"syscall"
	"time"
	"unsafe"
)

// monotonicMillis reads CLOCK_MONOTONIC, which Python's time.monotonic()
// reads on Linux, in milliseconds.
func monotonicMillis() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return time.Now().UnixMilli()
	}
	return ts.Nano() / 1e6
}
