//go:build !linux

package filesystem

// osWatch is empty where the standard library has no file events:
// consumers of files other processes write poll.
type osWatch struct{}

func startOSWatch(folder string, ws *watchers) *osWatch { return nil }

func (o *osWatch) close() {}
