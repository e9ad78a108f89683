// Command bench is `make bench`: it runs the same messaging workloads through
// kombu-go's generated stubs, through the bare client library (amqp091-go,
// go-redis) and through Python Kombu, on the real brokers of this machine, in
// one run, and prints the rates side by side with their ratios and the
// allocations per message.
//
//	go run ./internal/bench [-n 20000] [-rounds 3] [-min-time 10s] [-transports amqp,redis]
//
// SDK and bare take turns within each round, a chunk of messages at a time,
// so that the noise of a shared 2-core machine hits both alike; the report gives medians over the rounds and the
// range of the rounds' SDK/bare ratios, so the noise is visible too. The
// bare client does the same work as the SDK: it serializes each message with
// the same codec, sets the same properties, uses the same confirm mode,
// prefetch and acks.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	n, pythonN, rounds int
	minTime            time.Duration // a workload runs more rounds than -rounds until it has run this long
	python             bool
	workloads          *regexp.Regexp // nil: all
}

// verbose makes every round print its figures to stderr (-v).
var verbose bool

// calibrate gives the SDK's turns to a second bare client (-calibrate), so
// that the SDK/bare column shows what the harness reads for two equal
// sides: its noise, and any favour it shows one side.
var calibrate bool

// selected reports whether the -run flag selects the workload.
func (c config) selected(transport, workload string) bool {
	return c.workloads == nil || c.workloads.MatchString(transport+" "+workload)
}

// result is one measured run.
type result struct {
	rate   float64 // messages per second
	allocs float64 // heap allocations per message, in this process
	cpu    float64 // CPU time per message of this process, in microseconds
}

// row is one line of the report.
type row struct {
	transport, workload string
	sdk, bare           result
	rounds              int
	ratio               float64 // median of the rounds' SDK/bare ratios
	ratioMin, ratioMax  float64
	python              float64 // 0: not measured
	note                string
}

func main() {
	var cfg config
	transports := flag.String("transports", "amqp", "comma-separated transports to measure")
	flag.IntVar(&cfg.n, "n", 20000, "messages per workload")
	flag.IntVar(&cfg.pythonN, "python-n", 5000, "messages per Python Kombu workload (it is slow)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per workload at least; the report gives medians")
	flag.DurationVar(&cfg.minTime, "min-time", 10*time.Second, "time per workload at least: quick workloads run more rounds")
	flag.BoolVar(&cfg.python, "python", true, "measure Python Kombu too, when /usr/bin/python3 has kombu")
	run := flag.String("run", "", "regexp: measure only the workloads whose \"transport workload\" matches")
	flag.BoolVar(&verbose, "v", false, "print each round's figures to stderr")
	flag.BoolVar(&calibrate, "calibrate", false, "AMQP: measure the bare client against a second one, to show the harness's noise")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *run != "" {
		re, err := regexp.Compile(*run)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -run:", err)
			os.Exit(2)
		}
		cfg.workloads = re
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.python && exec.Command(pythonBin, "-c", "import kombu").Run() != nil {
		fmt.Fprintln(os.Stderr, "bench: Python Kombu not installed (apt-get install python3-kombu); its column is empty")
		cfg.python = false
	}
	ctx := context.Background()
	var rows []row
	for _, t := range strings.Split(*transports, ",") {
		var rs []row
		var err error
		switch t {
		case "amqp":
			rs, err = benchAMQP(ctx, cfg)
		case "redis":
			rs, err = benchRedis(ctx, cfg)
		default:
			err = fmt.Errorf("unknown transport %q", t)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", t, err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		rows = append(rows, rs...)
	}
	report(os.Stdout, cfg, rows)
}

func report(w *os.File, cfg config, rows []row) {
	fmt.Fprintf(w, "kombu-go benchmark: %d messages per side per round, at least %d rounds and %v per workload, %s %s/%s, %d CPUs\n",
		cfg.n, cfg.rounds, cfg.minTime, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintln(w, "rates, allocations and CPU time are medians over the rounds; SDK/bare is the median of the rounds' ratios, with their range;")
	fmt.Fprintln(w, "CPU µs/msg is this process's CPU time per message: the client's own cost, which the broker's pace moves less than the rate")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tworkload\trounds\tSDK msg/s\tbare msg/s\tSDK/bare\t(range)\tPython msg/s\tSDK/Python\tSDK allocs/msg\tbare allocs/msg\tSDK CPU µs/msg\tbare CPU µs/msg\t")
	for _, r := range rows {
		py, vsPy := "-", "-"
		if r.python > 0 {
			py, vsPy = fmt.Sprintf("%.0f", r.python), fmt.Sprintf("%.1fx", r.sdk.rate/r.python)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f-%.2f\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			r.transport, r.workload, r.rounds, r.sdk.rate, r.bare.rate, r.ratio, r.ratioMin, r.ratioMax, py, vsPy, r.sdk.allocs, r.bare.allocs, r.sdk.cpu, r.bare.cpu)
	}
	tw.Flush()
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(w, "\n%s %s: %s", r.transport, r.workload, r.note)
		}
	}
	fmt.Fprintln(w)
}

// run is one side of a workload: it handles count messages.
type run func(count int) error

// sample is the time and heap allocations some runs of one side took.
type sample struct {
	side         string // "sdk" or "bare"
	elapsed, cpu time.Duration
	allocs       uint64
	n            int
}

func (s sample) result() result {
	return result{
		rate:   float64(s.n) / s.elapsed.Seconds(),
		allocs: float64(s.allocs) / float64(s.n),
		cpu:    float64(s.cpu.Microseconds()) / float64(s.n),
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

// timed runs fn for count messages and adds what it took to s.
func (s *sample) timed(count int, fn run) error {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu, start := cpuTime(), time.Now()
	var err error
	as(s.side, func() { err = fn(count) })
	s.elapsed += time.Since(start)
	s.cpu += cpuTime() - cpu
	runtime.ReadMemStats(&after)
	s.allocs += after.Mallocs - before.Mallocs
	s.n += count
	return err
}

// interleaved measures a workload that can be cut into chunks (publishing).
// In each round, after setup and a turn each to warm up, the two sides take
// turns, chunk messages at a time, until each has handled n; which side goes
// first alternates from one pair of turns to the next, and from one round
// to the next. (Setup must provide for the warm-up turns: a chunk more per
// side.) On a shared 2-core machine the broker's pace
// drifts by tens of percent within seconds (its garbage collection, disk
// syncs, the other side's backlog); taking turns this finely makes every
// drift weigh on both sides alike, where whole runs one after the other
// would credit it to whichever ran at the time.
//
// setup runs before each round; the teardown it returns, if any, after it.
func interleaved(cfg config, chunk int, setup func() (teardown func() error, err error), sdk, bare run) (row, error) {
	n := cfg.n
	var sdks, bares []sample
	began := time.Now()
	for round := 0; round < cfg.rounds || time.Since(began) < cfg.minTime && round < maxRounds; round++ {
		teardown, err := setup()
		if err != nil {
			return row{}, err
		}
		if teardown == nil {
			teardown = func() error { return nil }
		}
		// A turn each, untimed: the first turn after setup meets a
		// broker that is not yet in its stride (an empty queue, a fresh
		// consumer), and whichever side took it would pay for it.
		var warm sample
		if err := warm.timed(chunk, bare); err != nil {
			return row{}, errors.Join(err, teardown())
		}
		if err := warm.timed(chunk, sdk); err != nil {
			return row{}, errors.Join(err, teardown())
		}
		runtime.GC()
		s, b := sample{side: "sdk"}, sample{side: "bare"}
		for pair := 0; s.n < n; pair++ {
			count := min(chunk, n-s.n)
			first, second := &b, &s
			firstFn, secondFn := bare, sdk
			if (pair+round)%2 == 1 {
				first, second, firstFn, secondFn = &s, &b, sdk, bare
			}
			if err := first.timed(count, firstFn); err != nil {
				return row{}, errors.Join(err, teardown())
			}
			if err := second.timed(count, secondFn); err != nil {
				return row{}, errors.Join(err, teardown())
			}
		}
		if err := teardown(); err != nil {
			return row{}, err
		}
		sdks, bares = append(sdks, s), append(bares, b)
	}
	return summarize(sdks, bares), nil
}

// as runs f with the profiler label side=name, which the goroutines it
// starts inherit, so that `go tool pprof -tagfocus side=sdk` shows one side
// of a -cpuprofile.
func as(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", name), func(context.Context) { f() })
}

// maxRounds bounds the rounds -min-time adds.
const maxRounds = 50

// table collects the rows of one transport's workloads.
type table struct {
	cfg       config
	transport string
	rows      []row
}

// add measures a workload with the sides taking turns, chunk messages at a
// time (see interleaved), if -run selects it, and keeps its row.
func (t *table) add(workload string, chunk int, setup func() (func() error, error), sdk, bare run, python float64) error {
	if !t.cfg.selected(t.transport, workload) {
		return nil
	}
	r, err := interleaved(t.cfg, chunk, setup, sdk, bare)
	if err != nil {
		return fmt.Errorf("%s: %w", workload, err)
	}
	r.transport, r.workload, r.python = t.transport, workload, python
	t.rows = append(t.rows, r)
	return nil
}

// only makes a setup without a teardown.
func only(setup func() error) func() (func() error, error) {
	return func() (func() error, error) { return nil, setup() }
}

// summarize makes a row of per-round samples: the median rate and
// allocations of each side, and the median and range of the rounds' ratios.
func summarize(sdks, bares []sample) row {
	var r row
	ratios := make([]float64, len(sdks))
	sdkRates, bareRates := make([]float64, len(sdks)), make([]float64, len(sdks))
	sdkAllocs, bareAllocs := make([]float64, len(sdks)), make([]float64, len(sdks))
	sdkCPU, bareCPU := make([]float64, len(sdks)), make([]float64, len(sdks))
	for i := range sdks {
		s, b := sdks[i].result(), bares[i].result()
		if verbose {
			fmt.Fprintf(os.Stderr, "round %d: SDK %.0f msg/s %.1f µs CPU/msg, bare %.0f msg/s %.1f µs CPU/msg, ratio %.2f\n",
				i+1, s.rate, s.cpu, b.rate, b.cpu, s.rate/b.rate)
		}
		ratios[i] = s.rate / b.rate
		sdkRates[i], bareRates[i] = s.rate, b.rate
		sdkAllocs[i], bareAllocs[i] = s.allocs, b.allocs
		sdkCPU[i], bareCPU[i] = s.cpu, b.cpu
	}
	r.sdk = result{rate: median(sdkRates), allocs: median(sdkAllocs), cpu: median(sdkCPU)}
	r.bare = result{rate: median(bareRates), allocs: median(bareAllocs), cpu: median(bareCPU)}
	r.ratio = median(ratios)
	r.ratioMin, r.ratioMax = slices.Min(ratios), slices.Max(ratios)
	r.rounds = len(ratios)
	return r
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

const pythonBin = "/usr/bin/python3"

// pythonRate runs kombu_bench.py and returns its rate in messages/second.
func pythonRate(args ...string) (float64, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "kombu_bench.py")
	out, err := exec.Command(pythonBin, append([]string{script}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return 0, fmt.Errorf("python: %v: %s", err, ee.Stderr)
		}
		return 0, err
	}
	var r struct{ Rate float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("python output %q: %v", out, err)
	}
	return r.Rate, nil
}
