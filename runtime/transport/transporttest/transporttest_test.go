package transporttest_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/memory"
)

// The suite must fail a driver that breaks the contract. Each breakage
// below wraps a real driver (the in-process broker) in a throwaway one
// that breaks one rule; TestSuiteFailsBrokenDrivers runs the suite against
// it in a child process and checks that the check guarding the rule
// failed. The honest wrapper, which breaks nothing, must pass, so the
// failures come from the breakages and not from the wrapping.
var breakages = map[string]struct {
	wrap     func(transport.Conn) transport.Conn
	mustFail []string // checks (section/check) that must be among the failures
}{
	"honest": {
		wrap: func(c transport.Conn) transport.Conn { return &brokenConn{Conn: c} },
	},
	// Claims FeaturePriority, but drops x-max-priority and message
	// priorities: messages come out in publication order.
	"ignores-priority": {
		wrap: func(c transport.Conn) transport.Conn {
			return &brokenConn{Conn: c, dropQueueArg: "x-max-priority", changePublishing: func(p *transport.Publishing) { p.Priority = 0 }}
		},
		mustFail: []string{"Features/Priority"},
	},
	// Does not claim FeatureTTL, yet accepts TTLs and silently ignores
	// them instead of refusing them.
	"ignores-unclaimed-ttl": {
		wrap: func(c transport.Conn) transport.Conn {
			return &brokenConn{Conn: c, hide: transport.FeatureTTL, dropQueueArg: "x-message-ttl",
				changePublishing: func(p *transport.Publishing) { p.Expiration = 0 }}
		},
		mustFail: []string{"NotSupported/TTL"},
	},
	// Acknowledges a Get delivery it is asked to requeue: the message is
	// lost.
	"acks-on-reject": {
		wrap:     func(c transport.Conn) transport.Conn { return &brokenConn{Conn: c, acksOnReject: true} },
		mustFail: []string{"Get/AckRejectRequeue", "Purge/ReadyOnly"},
	},
	// Accepts a second settlement of a Get delivery instead of refusing it
	// with ErrPrecondition.
	"settles-twice": {
		wrap:     func(c transport.Conn) transport.Conn { return &brokenConn{Conn: c, forgivesSecondSettle: true} },
		mustFail: []string{"BadInput/SettleTwice"},
	},
}

const breakEnv = "KOMBU_TRANSPORTTEST_BREAK"

var memoryRuns atomic.Int64

// TestBrokenDriver runs the suite against one breakage, named by
// $KOMBU_TRANSPORTTEST_BREAK, when TestSuiteFailsBrokenDrivers starts it in
// a child process; on its own it does nothing.
func TestBrokenDriver(t *testing.T) {
	name := os.Getenv(breakEnv)
	if name == "" {
		t.Skip("run by TestSuiteFailsBrokenDrivers in a child process")
	}
	b, ok := breakages[name]
	if !ok {
		t.Fatalf("unknown breakage %q", name)
	}
	raw := fmt.Sprintf("memory:///transporttest-%s-%d", name, memoryRuns.Add(1))
	transporttest.Run(t, func(t *testing.T) transport.Conn { return b.wrap(openMemory(t, raw)) })
}

var failLine = regexp.MustCompile(`--- FAIL: TestBrokenDriver/(\S+)`)

func TestSuiteFailsBrokenDrivers(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(breakages)) {
		b := breakages[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenDriver$", "-test.v", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), breakEnv+"="+name)
			out, err := cmd.CombinedOutput()
			failed := map[string]bool{}
			for _, m := range failLine.FindAllStringSubmatch(string(out), -1) {
				failed[m[1]] = true
			}
			if len(b.mustFail) == 0 {
				if err != nil || len(failed) > 0 {
					t.Fatalf("the honest wrapper failed the suite (%v): %v\n%s", err, slices.Sorted(maps.Keys(failed)), out)
				}
				return
			}
			if _, isExit := err.(*exec.ExitError); !isExit {
				t.Fatalf("the suite passed a driver that breaks the contract (%v)\n%s", err, out)
			}
			for _, check := range b.mustFail {
				if !failed[check] {
					t.Errorf("check %s did not fail; failed: %v", check, slices.Sorted(maps.Keys(failed)))
				}
			}
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

// TestHelpers uses the exported helpers against the in-process broker.
func TestHelpers(t *testing.T) {
	c := openMemory(t, fmt.Sprintf("memory:///transporttest-helpers-%d", memoryRuns.Add(1)))
	defer c.Close()
	q := transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "x", Type: transport.ExchangeDirect})
	transporttest.Bind(t, c, transport.Binding{Source: "x", Destination: q.Name, RoutingKey: "k"})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "x", RoutingKey: "k", Body: []byte("m")})
	transporttest.Eventually(t, "the message", func() bool {
		info := transporttest.DeclareQueue(t, c, transport.Queue{Name: "q", Passive: true})
		return info.Messages == 1
	})
}

func openMemory(t *testing.T, raw string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c, err := memory.Driver{}.Open(context.Background(), u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// brokenConn is a throwaway driver: a real connection with one rule broken.
type brokenConn struct {
	transport.Conn
	hide                 transport.Features // not claimed, though the connection has them
	dropQueueArg         string             // removed from queue declarations
	changePublishing     func(*transport.Publishing)
	acksOnReject         bool // Get deliveries: Reject acks
	forgivesSecondSettle bool // Get deliveries: settling again returns nil
}

func (c *brokenConn) Features() transport.Features { return c.Conn.Features() &^ c.hide }

func (c *brokenConn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	if _, ok := q.Arguments[c.dropQueueArg]; ok {
		q.Arguments = maps.Clone(q.Arguments)
		delete(q.Arguments, c.dropQueueArg)
	}
	return c.Conn.DeclareQueue(ctx, q)
}

func (c *brokenConn) Publish(ctx context.Context, p *transport.Publishing) error {
	if c.changePublishing != nil {
		cp := *p
		c.changePublishing(&cp)
		p = &cp
	}
	return c.Conn.Publish(ctx, p)
}

func (c *brokenConn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	d, err := c.Conn.Get(ctx, queue, autoAck)
	if err == nil && d.Acknowledger != nil && (c.acksOnReject || c.forgivesSecondSettle) {
		d.Acknowledger = &brokenAcker{Acknowledger: d.Acknowledger, c: c, settled: map[uint64]bool{}}
	}
	return d, err
}

type brokenAcker struct {
	transport.Acknowledger
	c       *brokenConn
	mu      sync.Mutex
	settled map[uint64]bool
}

func (a *brokenAcker) again(tag uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.c.forgivesSecondSettle && a.settled[tag] {
		return true
	}
	a.settled[tag] = true
	return false
}

func (a *brokenAcker) Ack(tag uint64, multiple bool) error {
	if a.again(tag) {
		return nil
	}
	return a.Acknowledger.Ack(tag, multiple)
}

func (a *brokenAcker) Reject(tag uint64, requeue bool) error {
	if a.again(tag) {
		return nil
	}
	if a.c.acksOnReject {
		return a.Acknowledger.Ack(tag, false)
	}
	return a.Acknowledger.Reject(tag, requeue)
}
