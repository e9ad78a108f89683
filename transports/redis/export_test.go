package redis

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
)

// LoseNextTakeReply makes the next take on c run on the server and then
// fail as if the connection had broken before its reply arrived (what
// Redis does when it is stopped between running a script and sending the
// reply), or, with timeout, as if the reply had not come in time (a slow
// server: the connection is not lost). The fault is injected in the
// client; the server is real.
func LoseNextTakeReply(c transport.Conn, timeout bool) {
	h := &loseReply{sha: takeScript.Hash(), timeout: timeout}
	h.armed.Store(true)
	c.(*conn).rdb.AddHook(h)
}

type loseReply struct {
	sha       string
	timeout   bool
	pipelined bool // the next pipelined take, not the next one alone
	armed     atomic.Bool
}

func (h *loseReply) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *loseReply) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	if !h.pipelined {
		return next
	}
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			args := cmd.Args()
			if err == nil && cmd.Err() == nil && len(args) >= 2 && args[0] == "evalsha" && args[1] == h.sha && h.armed.CompareAndSwap(true, false) {
				cmd.SetErr(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
			}
		}
		return err
	}
}

// LoseNextPipelinedTakeReply makes the first take of the next pipeline
// that holds takes (the sharded mode's first round over several queues)
// run on the server and then fail as if its reply had not come in time.
// fired reports whether it has.
func LoseNextPipelinedTakeReply(c transport.Conn) (fired func() bool) {
	h := &loseReply{sha: takeScript.Hash(), timeout: true, pipelined: true}
	h.armed.Store(true)
	c.(*conn).rdb.AddHook(h)
	return func() bool { return !h.armed.Load() }
}

func (h *loseReply) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if h.pipelined || err != nil || len(args) < 2 || args[0] != "evalsha" || args[1] != h.sha || !h.armed.CompareAndSwap(true, false) {
			return err
		}
		lost := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		if h.timeout {
			lost.Err = os.ErrDeadlineExceeded
		}
		cmd.SetErr(lost)
		return lost
	}
}

// RouteTrusted reports whether c trusts its cached binding set of the
// exchange, publishing through it without a check (publish.go).
func RouteTrusted(c transport.Conn, exchange string) bool {
	_, trusted, _ := c.(*conn).routes.lookup(exchange)
	return trusted
}

// ParsedOptions is what a test sees of a parsed URL.
type ParsedOptions struct {
	Cluster    []string
	User, Pass string
	Prefix     string
	Sharded    bool
}

// ParseOptionsForTest parses a URL as Open does, without connecting.
func ParseOptionsForTest(u *transport.URL) (ParsedOptions, error) {
	o, err := parseOptions(u, transport.Config{})
	if err != nil {
		return ParsedOptions{}, err
	}
	return ParsedOptions{Cluster: o.cluster, User: o.user, Pass: o.pass, Prefix: o.keyprefix, Sharded: o.sharded}, nil
}

// WakeActive reports whether c's wake hub has client tracking on.
func WakeActive(c transport.Conn) bool {
	cn := c.(*conn)
	cn.mu.Lock()
	h := cn.hub
	cn.mu.Unlock()
	return h != nil && h.active.Load()
}
