package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The workloads of issue 16's transports (SQS, MongoDB, Google Pub/Sub,
// Azure Storage Queues), each on the emulator its tests run, started by
// the benchmark as the tests start it: goaws in this process (package
// sqstest), FerretDB on SQLite as a child process (mongotest), pstest in
// this process, Azurite's queue service as a child process (azuritetest).
// On an emulator the absolute rates mean little; the ratio to the bare
// client making the same calls does.
//
// The bare client is the vendor's Go client making the requests the
// transport makes: one send per publish; one receive of one message and
// one delete (or acknowledge) per message consumed, as the virtual
// connection's takes do (on MongoDB the transport's find, insert of the
// leased copy, delete of the original, and the copy's delete as the ack).
// It sends the serialized body, base64-encoded where the service stores
// text, where the SDK sends Kombu's JSON envelope around it: the
// difference is what kombu-go costs on top of the emulator's work.
// Python Kombu runs where Debian packages its transport (SQS with boto3
// and pycurl, MongoDB with pymongo).

const (
	emuChunk = 100 // messages per turn
	emuScale = 4   // -n ÷ this: an emulator takes a few thousand requests a second
)

// emulated is one transport's part in the shared workloads.
type emulated struct {
	url string // the SDK's
	// direct: the transport has no topic exchanges (Pub/Sub): the SDK's
	// sides publish with kombu.Producer to a direct exchange of the same
	// name, where the others use the generated BenchProducer, and consume
	// with kombu.NewConsumer and the generated handler's method.
	direct      bool
	bareLabel   string
	barePurge   func() error
	barePublish run
	bareConsume run
	// bareEnvelope, if set, is a second bare publisher sending a text the
	// size and shape of the SDK's envelope (Azurite: its cost grows with
	// the text it stores).
	bareEnvelope run
	// pyURL and pyOpts (JSON transport options): Python Kombu's side; ""
	// for none.
	pyURL, pyOpts, pyLabel, pyImports string
	// chunk and scale: messages per turn (0: emuChunk) and -n ÷ scale
	// messages per side per round (0: emuScale).
	chunk, scale int
	// pyDepth: Python's consume rounds run with the bare queue as deep as
	// in the SDK's rounds, on a store (FerretDB's one collection) whose
	// every take costs in proportion to all the queues' messages.
	pyDepth bool
	note    string
}

// emuSDK is one SDK side's connection and how it publishes one order.
type emuSDK struct {
	conn    *kombu.Connection
	publish func(ctx context.Context, opts ...kombu.PublishOption) error
}

// directTopology is the benchmark's topology with a direct exchange.
func directTopology() kombu.Topology {
	t := kombubenchv1.BenchTopology()
	t.Exchanges[0].Type = kombu.ExchangeDirect
	t.Queues[0].Bindings[0].RoutingKey = benchRoutingKey
	return t
}

func (e emulated) dial(ctx context.Context, k kind) (*emuSDK, error) {
	var conn *kombu.Connection
	var err error
	as(k.String(), func() { conn, err = kombu.Dial(ctx, e.url) })
	if err != nil {
		return nil, err
	}
	if !e.direct {
		if err := kombubenchv1.BenchTopology().Declare(ctx, conn); err != nil {
			return nil, errors.Join(err, conn.Close())
		}
		p := kombubenchv1.NewBenchProducer(conn)
		return &emuSDK{conn: conn, publish: func(ctx context.Context, opts ...kombu.PublishOption) error {
			return p.PlaceOrder(ctx, order, opts...)
		}}, nil
	}
	t := directTopology()
	if err := t.Declare(ctx, conn); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	p := kombu.NewProducer(conn, kombu.WithExchange(t.Exchanges[0]), kombu.WithSerializer("protobuf"),
		kombu.WithRoutingKey(benchRoutingKey), kombu.WithType(messageType), kombu.WithDeclare(t.Queues[0]))
	return &emuSDK{conn: conn, publish: func(ctx context.Context, opts ...kombu.PublishOption) error {
		return p.Publish(ctx, order, opts...)
	}}, nil
}

// consumer is the side's held consumer, with opts.
func (e emulated) consumer(ctx context.Context, k kind, s *emuSDK, opts ...kombu.ConsumerOption) *held {
	if !e.direct {
		return sdkConsumer(ctx, k, s.conn, opts...)
	}
	return &held{name: k.String(), start: func(t *turn) (func() error, error) {
		h := heldHandler{t: t}
		top := directTopology()
		consumer, err := kombu.NewConsumer(s.conn, []kombu.Subscription{{Queue: top.Queues[0], Handler: kombu.Typed(h.PlaceOrder)}},
			append([]kombu.ConsumerOption{kombu.WithTopology(top), kombu.WithAccept("protobuf")}, opts...)...)
		if err != nil {
			return nil, err
		}
		ended := make(chan error, 1)
		go func() {
			err := consumer.Run(ctx)
			if err != nil {
				t.fail(err)
			}
			ended <- err
		}()
		return func() error {
			t.stop()
			return errors.Join(consumer.Close(), <-ended)
		}, nil
	}}
}

// each publishes one message at a time.
func (s *emuSDK) each(ctx context.Context) run {
	return func(count int) error {
		for range count {
			if err := s.publish(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// batched publishes in kombu.Batch batches of pipelineWindow.
func (s *emuSDK) batched(ctx context.Context) run {
	return func(count int) error {
		var batch kombu.Batch
		inBatch := kombu.InBatch(&batch)
		for sent := 0; sent < count; {
			for ; sent < count && batch.Len() < pipelineWindow; sent++ {
				if err := s.publish(ctx, inBatch); err != nil {
					return err
				}
			}
			if err := batch.Send(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// explained adds the benchmark queue's depth to a turn's error.
func (s *emuSDK) explained(ctx context.Context, r run) run {
	return (&sdk{conn: s.conn}).explained(ctx, r)
}

func (s *emuSDK) purge(ctx context.Context) error {
	_, err := kombu.Queue{Name: benchQueue}.Purge(ctx, s.conn)
	if errors.Is(err, kombu.ErrNotFound) {
		return nil
	}
	return err
}

// benchEmulated runs the shared workloads: publish one by one, and
// consume with an ack each.
func benchEmulated(ctx context.Context, tab *table, e emulated) error {
	defaults, err := e.dial(ctx, sdkDefaults)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	tuned, err := e.dial(ctx, sdkTuned)
	if err != nil {
		return err
	}
	defer tuned.conn.Close()
	purge := func() error { return errors.Join(defaults.purge(ctx), e.barePurge()) }
	chunk, scale := cmp.Or(e.chunk, emuChunk), cmp.Or(e.scale, emuScale)
	n := max(tab.cfg.n/scale, 2*chunk)
	pyN := max(tab.cfg.pythonN/scale, 100)
	var python func(workload string, prepare func(int) error) func(int) (pythonResult, error)
	if e.pyURL != "" && tab.cfg.python && hasPython(e.pyImports) {
		python = func(workload string, prepare func(int) error) func(int) (pythonResult, error) {
			run := pythonSide(e.pyURL, workload, e.pyLabel, prepare)
			return pythonN(pyN, func(n int) (pythonResult, error) {
				os.Setenv("KOMBU_BENCH_TRANSPORT_OPTIONS", e.pyOpts)
				defer os.Unsetenv("KOMBU_BENCH_TRANSPORT_OPTIONS")
				return run(n)
			})
		}
	} else {
		python = func(string, func(int) error) func(int) (pythonResult, error) { return nil }
	}
	targets := []target{{who: sdkDefaults, minVsBare: 0.8, minVsPython: 5}}

	publishers := []side{
		{sdkDefaults, "", defaults.each(ctx)},
		{bare, e.bareLabel, e.barePublish},
	}
	if e.bareEnvelope != nil {
		publishers = append(publishers, side{bareTwin, e.bareLabel + ", the SDK's envelope as text", e.bareEnvelope})
	}
	err = tab.add(workload{
		name: "publish, one by one", n: n, chunk: chunk, setup: only(purge),
		sides:   publishers,
		python:  python("publish-unconfirmed", func(int) error { return purge() }),
		targets: targets,
	})
	if err != nil {
		return err
	}
	// A held consumer fills its prefetch between turns: one whose prefetch
	// holds a whole turn's messages would be timed settling what it took
	// before the clock started (acks return at once on SQS and MongoDB).
	// The tuned prefetch is a quarter of a turn at most here.
	prefetch := max(min(tunedPrefetch, chunk/4), 1)
	consumers := []*held{
		e.consumer(ctx, sdkDefaults, defaults),
		e.consumer(ctx, sdkTuned, tuned, kombu.WithPrefetch(prefetch)),
	}
	err = tab.add(workload{
		name: "consume, ack each", n: n, chunk: chunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			// The bare queue is filled as deep as the SDK's, which its two
			// consumers share: pstest, FerretDB and Azurite look through
			// a queue's messages at every receive, so a deeper queue
			// costs each receive more.
			depth := len(consumers) * (n + chunk + tunedPrefetch)
			if err := defaults.batched(ctx)(depth); err != nil {
				return nil, err
			}
			if err := e.barePublish(depth); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, fmt.Sprintf("prefetch %d", prefetch), defaults.explained(ctx, consumers[1].take)},
			{bare, e.bareLabel, e.bareConsume},
		},
		python: python("consume", func(pn int) error {
			if err := errors.Join(purge(), defaults.batched(ctx)(pn)); err != nil || !e.pyDepth {
				return err
			}
			// As many messages stored as in the SDK's rounds (its queue
			// and the bare one, depth each): Python's, and the rest in
			// the bare queue.
			depth := len(consumers) * (n + chunk + tunedPrefetch)
			return e.barePublish(max(2*depth-pn, 0))
		}),
		targets: targets,
		note:    e.note,
	})
	if err != nil {
		return err
	}
	_, err = kombu.Queue{Name: benchQueue}.Delete(ctx, defaults.conn)
	return err
}

// hasPython reports whether /usr/bin/python3 imports Kombu and the
// modules a transport needs.
func hasPython(imports string) bool {
	if exec.Command(pythonBin, "-c", "import kombu, "+imports).Run() != nil {
		fmt.Fprintf(os.Stderr, "bench: Python Kombu's transport needs %s, not installed; its rows are left out\n", imports)
		return false
	}
	return true
}
