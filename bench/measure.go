package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

// kind is who does a side's work.
type kind int

const (
	sdkDefaults  kind = iota // the generated stubs created with no options
	sdkTuned                 // the generated stubs with the options the workload's speed calls for
	bare                     // the broker's client library alone, doing the same work
	bareTwin                 // -calibrate: a second bare client, to show the harness's noise
	viaWatermill             // Watermill on the same broker
	viaPython                // Python Kombu, in a process of its own
	sdkPool                  // the SDK through a kombu.ProducerPool
)

func (k kind) String() string {
	return [...]string{"SDK defaults", "SDK tuned", "bare", "bare twin", "Watermill", "Python Kombu", "SDK pool"}[k]
}

// run is one side's turn: it handles count messages.
type run func(count int) error

// side is one contender in a workload.
type side struct {
	kind  kind
	label string // what it is or how it is set up: "amqp091-go", "prefetch 100"
	run   run
}

// workload is one set of rows of the report: the same work done by each
// side, taking turns (see interleaved), and by Python Kombu once.
type workload struct {
	name  string
	n     int // messages per side per round; 0: -n
	chunk int // messages per turn
	// setup runs before each round (purging queues, filling them, starting
	// held consumers); the teardown it returns, if any, after the round.
	// It must provide for a warm-up turn per side: a chunk more each.
	setup  func() (teardown func() error, err error)
	sides  []side
	python func(n int) (pythonResult, error) // nil: Python Kombu has no such row
	// vsFirst compares the sides with the first instead of the bare client
	// (the pool rows: with one connection).
	vsFirst bool
	targets []target
	note    string
}

// only makes a setup without a teardown.
func only(setup func() error) func() (func() error, error) {
	return func() (func() error, error) { return nil, setup() }
}

// result is what one side measured.
type result struct {
	rate   float64 // messages per second
	allocs float64 // heap allocations per message, in this process; NaN: not measured
	cpu    float64 // CPU time per message of the side's process, in microseconds
}

// sideRow is one line of the report.
type sideRow struct {
	kind   kind
	label  string
	rounds int
	result
	vsBare, vsBareMin, vsBareMax float64 // rate ÷ the reference's (the bare client's): median and range of the rounds'
	reference                    bool    // the side the others are compared with
}

func (s sideRow) name() string {
	if s.label == "" {
		return s.kind.String()
	}
	return s.kind.String() + " (" + s.label + ")"
}

// row is the report of one workload.
type row struct {
	transport, workload string
	n                   int
	sides               []sideRow
	targets             []target
	note                string
}

// find returns the row's side of kind k.
func (r row) find(k kind) (sideRow, bool) {
	for _, s := range r.sides {
		if s.kind == k {
			return s, true
		}
	}
	return sideRow{}, false
}

// sdk returns the SDK side the other sides are compared with: the one at
// its defaults where the workload has one.
func (r row) sdk() (sideRow, bool) {
	if s, ok := r.find(sdkDefaults); ok {
		return s, true
	}
	return r.find(sdkTuned)
}

// sample is what some turns of one side took.
type sample struct {
	elapsed, cpu time.Duration
	allocs       uint64
	n            int
}

func (s sample) result() result {
	return result{
		rate:   float64(s.n) / s.elapsed.Seconds(),
		allocs: float64(s.allocs) / float64(s.n),
		cpu:    float64(s.cpu.Nanoseconds()) / 1e3 / float64(s.n),
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs fn for count messages, labelled name for -cpuprofile, and
// adds what it took to s.
func (s *sample) timed(name string, count int, fn run) error {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu, start := cpuTime(), time.Now()
	var err error
	as(name, func() { err = fn(count) })
	s.elapsed += time.Since(start)
	s.cpu += cpuTime() - cpu
	runtime.ReadMemStats(&after)
	s.allocs += after.Mallocs - before.Mallocs
	s.n += count
	return err
}

// interleaved measures a workload's sides. In each round, after setup and
// an untimed turn each to warm up, the sides take turns, chunk messages at
// a time, until each has handled n; which side goes first rotates from one
// set of turns to the next, and from one round to the next. On a shared
// 2-core machine the broker's pace drifts by tens of percent within
// seconds (its garbage collection, disk syncs, the last side's backlog);
// taking turns this finely makes every drift weigh on all sides alike,
// where whole runs one after the other would credit it to whichever ran at
// the time. It returns each side's samples, one per round.
func interleaved(cfg config, w workload) ([][]sample, error) {
	n := w.n
	if n == 0 {
		n = cfg.n
	}
	samples := make([][]sample, len(w.sides))
	began := time.Now()
	for round := 0; round < cfg.rounds || time.Since(began) < cfg.minTime && round < maxRounds; round++ {
		teardown, err := w.setup()
		if err != nil {
			return nil, err
		}
		if teardown == nil {
			teardown = func() error { return nil }
		}
		// A turn each, untimed: the first turn after setup meets a broker
		// that is not yet in its stride (an empty queue, a fresh
		// consumer), and whichever side took it would pay for it.
		for _, s := range w.sides {
			var warm sample
			if err := warm.timed(s.kind.String(), w.chunk, s.run); err != nil {
				return nil, errors.Join(fmt.Errorf("%s: %w", s.kind, err), teardown())
			}
		}
		runtime.GC()
		got := make([]sample, len(w.sides))
		for set := 0; got[0].n < n; set++ {
			count := min(w.chunk, n-got[0].n)
			for i := range w.sides {
				k := (i + set + round) % len(w.sides)
				s := w.sides[k]
				if err := got[k].timed(s.kind.String(), count, s.run); err != nil {
					return nil, errors.Join(fmt.Errorf("%s: %w", s.kind, err), teardown())
				}
			}
		}
		if err := teardown(); err != nil {
			return nil, err
		}
		for i := range w.sides {
			samples[i] = append(samples[i], got[i])
		}
	}
	return samples, nil
}

// as runs f with the profiler label side=name, which the goroutines it
// starts inherit, so that `go tool pprof -tagfocus side=...` shows one
// side of a -cpuprofile.
func as(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", name), func(context.Context) { f() })
}

// maxRounds bounds the rounds -min-time adds.
const maxRounds = 50

// summarize makes the report's lines from the sides' samples: each side's
// median rate, allocations and CPU time, and the median and range of its
// rounds' rates over the reference side's (sides[ref], usually the bare
// client; -1: none).
func summarize(sides []side, samples [][]sample, ref int) []sideRow {
	bareAt := ref
	rows := make([]sideRow, len(sides))
	for i, s := range sides {
		rounds := len(samples[i])
		rates, allocs, cpus, vsBare := make([]float64, rounds), make([]float64, rounds), make([]float64, rounds), make([]float64, rounds)
		for r, smp := range samples[i] {
			res := smp.result()
			rates[r], allocs[r], cpus[r] = res.rate, res.allocs, res.cpu
			vsBare[r] = math.NaN()
			if bareAt >= 0 {
				vsBare[r] = res.rate / samples[bareAt][r].result().rate
			}
			if verbose {
				fmt.Fprintf(os.Stderr, "  round %d %-12s %10.0f msg/s %6.1f allocs/msg %8.2f µs CPU/msg  ×bare %.2f\n",
					r+1, s.kind, res.rate, res.allocs, res.cpu, vsBare[r])
			}
		}
		rows[i] = sideRow{
			kind: s.kind, label: s.label, rounds: rounds,
			result: result{rate: median(rates), allocs: median(allocs), cpu: median(cpus)},
			vsBare: median(vsBare), vsBareMin: slices.Min(vsBare), vsBareMax: slices.Max(vsBare),
			reference: i == ref,
		}
	}
	return rows
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// reference is the index of the side the others are compared with: the
// bare client, or the first side with vsFirst; -1 for none.
func (w workload) reference() int {
	if w.vsFirst {
		return 0
	}
	return slices.IndexFunc(w.sides, func(s side) bool { return s.kind == bare })
}

// table collects the rows of one transport's workloads.
type table struct {
	cfg       config
	transport string
	rows      []row
}

// add measures a workload, if -run selects it, and keeps its row. Python
// Kombu's side runs after the Go sides, which take turns: -python-rounds
// processes, their median reported.
func (t *table) add(w workload) error {
	if !t.cfg.selected(t.transport, w.name) {
		return nil
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "%s %s\n", t.transport, w.name)
	}
	samples, err := interleaved(t.cfg, w)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	r := row{transport: t.transport, workload: w.name, n: w.n, sides: summarize(w.sides, samples, w.reference()), targets: w.targets, note: w.note}
	if r.n == 0 {
		r.n = t.cfg.n
	}
	if w.python != nil && t.cfg.python {
		// A run is a fresh process, whose rate moves from run to run
		// more than the Go sides' rounds: the median of a few runs.
		var runs []pythonResult
		for range max(t.cfg.pythonRounds, 1) {
			py, err := w.python(t.cfg.pythonN)
			if err != nil {
				return fmt.Errorf("%s: Python Kombu: %w", w.name, err)
			}
			runs = append(runs, py)
		}
		slices.SortFunc(runs, func(a, b pythonResult) int { return cmp.Compare(a.rate, b.rate) })
		py := runs[len(runs)/2]
		s := sideRow{kind: viaPython, label: py.label, rounds: len(runs), result: result{rate: py.rate, allocs: math.NaN(), cpu: py.cpu}}
		s.vsBare, s.vsBareMin, s.vsBareMax = math.NaN(), math.NaN(), math.NaN()
		if b, ok := r.find(bare); ok {
			s.vsBare = py.rate / b.rate
			s.vsBareMin, s.vsBareMax = runs[0].rate/b.rate, runs[len(runs)-1].rate/b.rate
		}
		r.sides = append(r.sides, s)
	}
	t.rows = append(t.rows, r)
	return nil
}
