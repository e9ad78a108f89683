package filesystem

import (
	"os"
	"syscall"
	"unsafe"
)

// osWatch reads inotify events for data_folder_in: a file renamed into it
// (kombu-go's writes, restores and puts back) or closed after writing
// (Python Kombu's writes) wakes the consumers of its queue.
type osWatch struct {
	f    *os.File
	done chan struct{}
}

// startOSWatch starts watching folder, or returns nil if inotify is not
// available (the per-user limit of instances reached, say): consumers then
// poll.
func startOSWatch(folder string, ws *watchers) *osWatch {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := syscall.InotifyAddWatch(fd, folder, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil
	}
	// Non-blocking, so that reads wait in Go's poller and Close ends them.
	o := &osWatch{f: os.NewFile(uintptr(fd), "inotify:"+folder), done: make(chan struct{})}
	go o.run(ws)
	return o
}

func (o *osWatch) run(ws *watchers) {
	defer close(o.done)
	buf := make([]byte, 64*1024)
	for {
		n, err := o.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameAt := off + syscall.SizeofInotifyEvent
			off = nameAt + int(ev.Len)
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				ws.notify("") // events were lost: wake everyone
				continue
			}
			if off > n {
				break
			}
			name := buf[nameAt:off]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			if f, ok := parseName(string(name)); ok {
				ws.appeared(f)
			}
		}
	}
}

func (o *osWatch) close() {
	o.f.Close()
	<-o.done
}
