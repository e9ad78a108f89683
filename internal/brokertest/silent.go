package brokertest

import (
	"net"
	"sync"
	"testing"
)

// Silent is a listener that accepts every connection and never answers
// on it: a host that takes TCP and hangs, as a wedged server or an
// accepting firewall does, unlike a refused port, which fails at once.
type Silent struct {
	Addr string // "127.0.0.1:port"

	mu   sync.Mutex
	held []net.Conn
}

// SilentListener starts a Silent on a free port of 127.0.0.1; it and what
// it accepted are closed when the test ends.
func SilentListener(t testing.TB) *Silent {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Silent{Addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.held = append(s.held, c) // held open, silent
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.held {
			_ = c.Close()
		}
	})
	return s
}

// Accepted is how many connections it has taken: a test can check that
// the client reached it, so that it tested a silent server at all.
func (s *Silent) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}
