package nats

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// puller sends JetStream pull requests over one long-lived inbox
// subscription of the connection's: nats.go's Fetch subscribes and
// unsubscribes an inbox for each request, which a consumer taking a few
// messages at a time pays for at every take. The server answers a no-wait
// request with up to batch messages, then (if it had fewer) a status
// message. Delivered messages carry their stream subject, not the inbox,
// so replies cannot be told apart by request: requests go one at a time,
// and a message of another stream than the current request's (a late
// answer to a request that gave up) is naked back.
type puller struct {
	nc     *nats.Conn
	prefix string // the inbox
	sub    *nats.Subscription

	fetchMu sync.Mutex // one request at a time

	mu     sync.Mutex
	cur    chan *nats.Msg // the current request's, nil between requests
	stream string         // the current request's stream
}

func newPuller(nc *nats.Conn) (*puller, error) {
	p := &puller{nc: nc, prefix: nc.NewInbox()}
	sub, err := nc.Subscribe(p.prefix, p.dispatch)
	if err != nil {
		return nil, err
	}
	// Replies are bounded by the batches asked for; no slow-consumer limit.
	_ = sub.SetPendingLimits(-1, -1)
	p.sub = sub
	return p, nil
}

func (p *puller) close() { _ = p.sub.Unsubscribe() }

// dispatch hands a reply to the current request. A message nobody waits
// for is naked back at once: nobody holds it.
func (p *puller) dispatch(m *nats.Msg) {
	js := isJSMessage(m)
	p.mu.Lock()
	ch := p.cur
	if js {
		if md, ok := parseAck(m.Reply); !ok || md.stream != p.stream {
			ch = nil
		}
	}
	if ch != nil {
		select {
		case ch <- m:
			p.mu.Unlock()
			return
		default:
		}
	}
	p.mu.Unlock()
	if js {
		_ = m.Respond([]byte("-NAK"))
	}
}

// isJSMessage tells a delivered stream message from a status reply.
func isJSMessage(m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, "$JS.ACK.") && (m.Header == nil || m.Header.Get("Status") == "")
}

// errNoStream is a pull that nothing answered: the stream or its consumer
// does not exist.
var errNoStream = fmt.Errorf("no stream answered the pull request")

// fetch asks the consumer for up to batch messages without waiting for
// more to arrive, and returns those it got.
func (p *puller) fetch(ctx context.Context, stream, consumer string, batch int) ([]*nats.Msg, error) {
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	ch := make(chan *nats.Msg, batch+1)
	p.mu.Lock()
	p.cur, p.stream = ch, stream
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.cur, p.stream = nil, ""
		p.mu.Unlock()
		// Anything that came after the last read goes back.
		for {
			select {
			case m := <-ch:
				if isJSMessage(m) {
					_ = m.Respond([]byte("-NAK"))
				}
			default:
				return
			}
		}
	}()
	req := fmt.Appendf(nil, `{"batch":%d,"no_wait":true}`, batch)
	subject := "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
	if err := p.nc.PublishRequest(subject, p.prefix, req); err != nil {
		return nil, err
	}
	// A no-wait pull is answered at once, except where the server has
	// nothing to say (a consumer whose only message reached max_deliver
	// answers nothing): after a second, as nats.go's FetchNoWait, what came
	// is the answer.
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	var out []*nats.Msg
	for len(out) < batch {
		select {
		case m := <-ch:
			if isJSMessage(m) {
				out = append(out, m)
				continue
			}
			switch status := m.Header.Get("Status"); status {
			case "404", "408", "409":
				// No (more) messages, the request expired, or the
				// consumer is busy or gone: what came is the answer.
				if status == "409" && len(out) == 0 && strings.Contains(strings.ToLower(m.Header.Get("Description")), "deleted") {
					return nil, errNoStream
				}
				return out, nil
			case "503":
				return out, errNoStream
			case "100":
				continue // heartbeat
			default:
				return out, fmt.Errorf("pull from stream %s: status %s %s", stream, status, m.Header.Get("Description"))
			}
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			for _, m := range out {
				_ = m.Respond([]byte("-NAK"))
			}
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// ackMeta is what a delivered message's ack subject says:
// $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>,
// with a domain and an account hash after $JS.ACK on newer servers.
type ackMeta struct {
	stream    string
	delivered uint64
	seq       uint64
}

func parseAck(reply string) (ackMeta, bool) {
	// Split into an array on the stack: this runs twice for every message
	// taken.
	var arr [16]string
	tok := arr[:0]
	for rest := reply; ; {
		t, after, more := strings.Cut(rest, ".")
		if len(tok) == len(arr) {
			tok = strings.Split(reply, ".") // longer than any ack subject nats-server writes today
			break
		}
		tok = append(tok, t)
		if !more {
			break
		}
		rest = after
	}
	switch {
	case len(tok) == 9:
	case len(tok) >= 11:
		tok = append(tok[:2], tok[4:]...)
	default:
		return ackMeta{}, false
	}
	delivered, err1 := strconv.ParseUint(tok[4], 10, 64)
	seq, err2 := strconv.ParseUint(tok[5], 10, 64)
	if err1 != nil || err2 != nil {
		return ackMeta{}, false
	}
	return ackMeta{stream: tok[2], delivered: delivered, seq: seq}, true
}
