package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

type consumeFlags struct {
	count     int
	ack       bool
	requeue   bool
	follow    bool
	failEmpty bool
	raw       bool
	poll      time.Duration
	protos    protoSource
	message   string
}

func (f *consumeFlags) common(fs *flag.FlagSet) {
	fs.IntVar(&f.count, "count", 0, "stop after this many messages (0: no bound)")
	fs.BoolVar(&f.raw, "raw", false, "print bodies as they are stored, not decoded or decompressed")
	fs.BoolVar(&f.failEmpty, "fail-empty", false, "exit 5 when no message was found")
	f.protos.flags(fs)
	fs.StringVar(&f.message, "message", "", "decode protobuf bodies as this message type (default: the message's type property)")
}

func consumeVerb() *verb {
	f := &consumeFlags{}
	return &verb{
		name:    "consume",
		summary: "take messages from a queue and print them",
		usage:   "<queue>",
		help: `Takes messages from a queue, prints each (bodies decoded: JSON, msgpack and
YAML as text, protobuf as JSON given --proto or --descriptor-set; --raw for
the stored bytes), and acknowledges it once printed (--ack, the default):
a message is gone only after it was printed.

With --requeue every message taken is held until the command ends and then
returned to the queue, marked redelivered: a way to look at messages on a
transport that cannot peek, at the cost of hiding them from other
consumers meanwhile. Without --follow the command ends when the queue has
no ready message left (or --count is reached); with --follow it waits for
more, polling, until --count or Ctrl-C.

Example:
  kombu consume --url amqp://guest:guest@localhost// --count 10 orders
  kombu consume --requeue --output json orders.dlq | jq .body
  kombu consume --follow --proto shop.proto orders`,
		flags: func(fs *flag.FlagSet, e *env) {
			f.common(fs)
			fs.BoolVar(&f.ack, "ack", true, "acknowledge each message once printed")
			fs.BoolVar(&f.requeue, "requeue", false, "return every message to the queue at the end instead of acknowledging it")
			fs.BoolVar(&f.follow, "follow", false, "wait for more messages until --count or Ctrl-C")
			fs.DurationVar(&f.poll, "poll", 250*time.Millisecond, "with --follow: how often an empty queue is asked again")
		},
		run: func(e *env, args []string) error { return runConsume(e, f, args) },
	}
}

func tailVerb() *verb {
	v := consumeVerb()
	v.name = "tail"
	v.summary = "print messages as they arrive (consume --follow)"
	v.help = `The same as consume --follow: takes and prints messages as they arrive
until --count or Ctrl-C. See kombu consume --help.

Example:
  kombu tail --url redis://localhost:6379/0 orders`
	flags := v.flags
	v.flags = func(fs *flag.FlagSet, e *env) {
		flags(fs, e)
		fl := fs.Lookup("follow")
		fl.Value.Set("true")
		fl.DefValue = "true"
	}
	return v
}

func queueArg(args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("want one queue name (got %d arguments)", len(args))
	}
	return args[0], nil
}

func (f *consumeFlags) decoder(e *env) (*decoder, error) {
	dc := &decoder{raw: f.raw, message: f.message}
	if f.protos.given() {
		set, _, err := f.protos.load(e.ctx)
		if err != nil {
			return nil, err
		}
		if dc.protos, err = newProtoTypes(set); err != nil {
			return nil, err
		}
	} else if f.message != "" {
		return nil, usagef("--message needs --proto or --descriptor-set")
	}
	return dc, nil
}

func runConsume(e *env, f *consumeFlags, args []string) error {
	queue, err := queueArg(args)
	if err != nil {
		return err
	}
	if f.count < 0 {
		return usagef("--count %d: not negative", f.count)
	}
	dc, err := f.decoder(e)
	if err != nil {
		return err
	}
	tc, err := e.open(e.url)
	if err != nil {
		return err
	}
	defer tc.Close()
	if !f.follow {
		// An unknown queue is an error here; following, a virtual
		// transport's empty queue (which it cannot tell from an unknown
		// one) is waited on.
		if err := inspect(e, tc, queue); err != nil {
			return err
		}
	}
	var held []*transport.Delivery
	n := 0
	var failure error
	for f.count == 0 || n < f.count {
		ctx, cancel := e.opCtx()
		d, err := tc.Get(ctx, queue, false)
		cancel()
		if e.ctx.Err() != nil {
			failure = errInterrupted
			break
		}
		if errors.Is(err, transport.ErrEmpty) {
			if !f.follow {
				break
			}
			select {
			case <-e.ctx.Done():
			case <-time.After(f.poll):
			}
			continue
		}
		if err != nil {
			failure = fmt.Errorf("get from queue %s: %w", queue, err)
			break
		}
		n++
		e.printMessage(dc.show(d))
		if f.requeue {
			held = append(held, d)
			continue
		}
		if f.ack && d.Acknowledger != nil {
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				failure = fmt.Errorf("ack: %w (the message will be delivered again)", err)
				break
			}
		}
	}
	for _, d := range held {
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil && failure == nil {
			failure = fmt.Errorf("requeue: %w (closing the connection returns the message)", err)
		}
	}
	e.summary("consumed", n, map[string]any{"queue": queue, "requeued": len(held)})
	if failure == nil && n == 0 && f.failEmpty {
		return errEmpty
	}
	return failure
}

// inspect checks that the queue exists with a passive declaration.
func inspect(e *env, tc transport.Conn, queue string) error {
	ctx, cancel := e.opCtx()
	defer cancel()
	if _, err := tc.DeclareQueue(ctx, transport.Queue{Name: queue, Passive: true}); err != nil {
		return fmt.Errorf("queue %s: %w", queue, err)
	}
	return nil
}

// summary ends a verb's output: a line on stderr in text mode (stdout holds
// the messages), a JSON line on stdout with --output json.
func (e *env) summary(what string, n int, extra map[string]any) {
	if e.output == "json" {
		m := map[string]any{what: n}
		for k, v := range extra {
			m[k] = v
		}
		writeJSON(e.stdout, m)
		return
	}
	line := fmt.Sprintf("%s %d message(s)", what, n)
	if r, ok := extra["requeued"].(int); ok && r > 0 {
		line += fmt.Sprintf(", %d returned to the queue", r)
	}
	fmt.Fprintln(e.stderr, line)
}

type peekFlags struct{ consumeFlags }

func peekVerb() *verb {
	f := &peekFlags{}
	return &verb{
		name:    "peek",
		summary: "look at a queue's messages without taking them",
		usage:   "<queue>",
		help: `Prints up to --count (default 10) of a queue's ready messages, the next to
be delivered first, and leaves them in the queue. How it looks depends on
the transport:

  redis://     LRANGE over the queue's lists: nothing is taken or changed,
               consumers see the messages exactly as before.
  amqp://      AMQP has no way to look without taking: the command takes the
               messages with basic.get (no ack), prints them, and rejects them
               with requeue. RabbitMQ puts them back in their place, marked
               redelivered; while the command holds them (a moment), other
               consumers do not see them. A consumer that counts redeliveries
               (quorum queues' x-delivery-limit) counts this one.
  others       (SQL, filesystem, SQS, MongoDB, Pub/Sub, Azure) the same as
               AMQP: taken and returned, marked redelivered where the
               transport marks returns.

Example:
  kombu peek --url redis://localhost:6379/0 --count 3 orders
  kombu peek --output json orders.dlq`,
		flags: func(fs *flag.FlagSet, e *env) {
			f.common(fs)
			fs.Lookup("count").DefValue = "10"
			fs.Lookup("count").Value.Set("10")
		},
		run: func(e *env, args []string) error { return runPeek(e, f, args) },
	}
}

func runPeek(e *env, f *peekFlags, args []string) error {
	queue, err := queueArg(args)
	if err != nil {
		return err
	}
	if f.count <= 0 {
		return usagef("--count %d: at least 1", f.count)
	}
	dc, err := f.decoder(e)
	if err != nil {
		return err
	}
	tc, err := e.open(e.url)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := inspect(e, tc, queue); err != nil {
		return err
	}
	if p, ok := tc.(transport.QueuePeeker); ok {
		ctx, cancel := e.opCtx()
		ds, err := p.PeekQueue(ctx, queue, f.count)
		cancel()
		if err != nil {
			return fmt.Errorf("peek at queue %s: %w", queue, err)
		}
		for _, d := range ds {
			e.printMessage(dc.show(d))
		}
		e.summary("peeked", len(ds), map[string]any{"queue": queue, "taken": false})
		if len(ds) == 0 && f.failEmpty {
			return errEmpty
		}
		return nil
	}
	// Take and return (see the help).
	f.requeue, f.follow = true, false
	return runTakeAndReturn(e, tc, dc, queue, f)
}

func runTakeAndReturn(e *env, tc transport.Conn, dc *decoder, queue string, f *peekFlags) error {
	var held []*transport.Delivery
	var failure error
	for len(held) < f.count {
		ctx, cancel := e.opCtx()
		d, err := tc.Get(ctx, queue, false)
		cancel()
		if errors.Is(err, transport.ErrEmpty) {
			break
		}
		if err != nil {
			failure = fmt.Errorf("get from queue %s: %w", queue, err)
			break
		}
		held = append(held, d)
	}
	// Return them before printing, so that they are hidden as briefly as
	// the broker allows.
	for _, d := range held {
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil && failure == nil {
			failure = fmt.Errorf("requeue: %w (closing the connection returns the message)", err)
		}
	}
	for _, d := range held {
		e.printMessage(dc.show(d))
	}
	e.summary("peeked", len(held), map[string]any{"queue": queue, "taken": true, "requeued": len(held)})
	if failure == nil && len(held) == 0 && f.failEmpty {
		return errEmpty
	}
	return failure
}
