// Command bench is `make bench`: it runs the same messaging workloads
// through kombu-go's generated stubs at their defaults and tuned, through
// the bare client library of each broker, through Watermill where it has
// the same broker, and through Python Kombu, in one run, and prints their
// rates side by side with the ratios, the allocations and the CPU time per
// message, and whether the speed targets (issues 13, 16, 19) are met.
//
//	cd bench && go run . [-short] [-transports memory,amqp,redis] [-run regexp] [-n 20000] [-rounds 3] [-min-time 10s]
//
// The Go sides take turns within each round, a chunk of messages at a
// time, so that the noise of a shared 2-core machine hits them alike (see
// interleaved); the report gives medians over the rounds and the range of
// the rounds' ratios to the bare client, so the noise is visible too. The
// bare client does the same work as the SDK: it serializes each message
// with the same codec, sets the same properties, uses the same confirm
// mode, prefetch and acks, and decodes what it consumes.
//
// This is a module of its own (bench/go.mod) so that Watermill and
// whatever else only the benchmark needs never reach the SDK's go.mod.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
	"unicode/utf8"
)

// transports lists what make bench measures, in the report's order. A
// transport adds its line here and a file with its workloads (memory.go
// is the shortest); the report, the turns, the SDK's sides (sdk.go) and
// Python Kombu's (kombu_bench.py, given the transport's URL) are shared.
var transports = []struct {
	name  string
	bench func(ctx context.Context, tab *table) error
}{
	{"memory", benchMemory},
	{"amqp", benchAMQP},
	{"redis", benchRedis},
	{"redis-cluster", benchRedisCluster},
	{"filesystem", benchFilesystem},
	{"postgresql", benchPostgres},
	{"mysql", benchMySQL},
	{"sqlite", benchSQLite},
	{"kafka", benchKafka},
	{"nats", benchNATS},
	{"sqs", benchSQS},
	{"mongodb", benchMongoDB},
	{"gcpubsub", benchPubSub},
	{"azurequeues", benchAzureQueues},
}

type config struct {
	n, pythonN, rounds int
	pythonRounds       int           // Python Kombu runs per workload; the report gives the median
	minTime            time.Duration // a workload runs more rounds than -rounds until it has run this long
	python             bool
	workloads          *regexp.Regexp // nil: all
}

// selected reports whether the -run flag selects the workload.
func (c config) selected(transport, workload string) bool {
	return c.workloads == nil || c.workloads.MatchString(transport+" "+workload)
}

// verbose makes every round print its figures to stderr (-v).
var verbose bool

// calibrate adds a second bare client to the AMQP workloads (-calibrate):
// its ratio to the first shows what the harness reads for two equal sides,
// its noise and any favour it shows one turn order.
var calibrate bool

func main() {
	var cfg config
	names := make([]string, len(transports))
	for i, t := range transports {
		names[i] = t.name
	}
	only := flag.String("transports", strings.Join(names, ","), "comma-separated transports to measure")
	flag.IntVar(&cfg.n, "n", 20000, "messages per side per round (memory://: ten times as many)")
	flag.IntVar(&cfg.pythonN, "python-n", 5000, "messages per Python Kombu workload (it is slow)")
	flag.IntVar(&cfg.pythonRounds, "python-rounds", 3, "Python Kombu runs per workload (a run is a process: its rate moves more than the Go sides'); the report gives the median")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per workload at least; the report gives medians")
	flag.DurationVar(&cfg.minTime, "min-time", 10*time.Second, "time per workload at least: quick workloads run more rounds")
	flag.BoolVar(&cfg.python, "python", true, "measure Python Kombu too, when /usr/bin/python3 has kombu")
	short := flag.Bool("short", false, "a quick check in under two minutes: -n 1000 -rounds 2 -min-time 0 -python-n 300 -python-rounds 1 unless set; rougher figures")
	run := flag.String("run", "", "regexp: measure only the workloads whose \"transport workload\" matches")
	flag.BoolVar(&verbose, "v", false, "print each round's figures to stderr")
	flag.BoolVar(&calibrate, "calibrate", false, "AMQP: measure a second bare client too, to show the harness's noise")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (sides labelled side=...)")
	flag.Parse()
	if *short {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, value := range map[string]string{"n": "1000", "rounds": "2", "min-time": "0", "python-n": "300", "python-rounds": "1"} {
			if !set[name] {
				flag.Set(name, value)
			}
		}
	}
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
	if cfg.python && !hasPythonKombu() {
		fmt.Fprintln(os.Stderr, "bench: Python Kombu not installed (apt-get install python3-kombu python3-redis); its rows are left out")
		cfg.python = false
	}
	began := time.Now()
	ctx := context.Background()
	var rows []row
	for _, want := range strings.Split(*only, ",") {
		i := indexOf(names, want)
		if i < 0 {
			fmt.Fprintf(os.Stderr, "bench: unknown transport %q (known: %s)\n", want, strings.Join(names, ", "))
			os.Exit(2)
		}
		tab := &table{cfg: cfg, transport: want}
		start := time.Now()
		err := transports[i].bench(ctx, tab)
		fmt.Fprintf(os.Stderr, "bench: %s took %v\n", want, time.Since(start).Round(time.Second))
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", want, err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		rows = append(rows, tab.rows...)
	}
	report(os.Stdout, cfg, rows, time.Since(began))
}

// printColumns prints lines of cells in columns two spaces apart, each
// aligned as align says: 'l' left (text), 'r' right (figures).
func printColumns(w io.Writer, align string, lines [][]string) {
	var widths []int
	for _, cells := range lines {
		for i, c := range cells {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, cells := range lines {
		var b strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if align[i] == 'l' {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// report prints the rows, one line per side, then the targets.
func report(w io.Writer, cfg config, rows []row, took time.Duration) {
	fmt.Fprintf(w, "kombu-go benchmark: %d messages per side per round (memory: %d), at least %d rounds and %v per workload; %d-byte protobuf body; %s %s/%s, %d CPUs; took %v\n",
		cfg.n, memoryScale*cfg.n, cfg.rounds, cfg.minTime, len(mustEncode()), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), took.Round(time.Second))
	fmt.Fprintln(w, "msg/s, allocs/msg and CPU µs/msg are medians over the rounds; ×bare is the median of the rounds' rate ratios to the bare client"+
		" (in the pool rows, to one connection), with their range;")
	fmt.Fprintln(w, "SDK÷ is how many times the SDK (at its defaults where the row has them) outpaces that side. allocs/msg and CPU µs/msg are this process's,")
	fmt.Fprintln(w, "per message: the broker's own work too on memory://, the client library's on the others (Python: its process's CPU, while timed)")
	fmt.Fprintf(w, "decoding one order into a new OrderPlaced costs %.0f allocations: the floor of any consumer that decodes it, bare ones included\n\n", decodeAllocs())
	lines := [][]string{{"transport", "workload", "side", "rounds", "msg/s", "×bare", "(range)", "SDK÷", "allocs/msg", "CPU µs/msg"}}
	for _, r := range rows {
		ref, _ := r.sdk()
		for i, s := range r.sides {
			transport, workload := "", ""
			if i == 0 {
				transport, workload = r.transport, r.workload
			}
			ratio, span, vs := "-", "", ""
			if !math.IsNaN(s.vsBare) {
				ratio = fmt.Sprintf("%.2f", s.vsBare)
			}
			if !math.IsNaN(s.vsBareMin) && !s.reference {
				span = fmt.Sprintf("%.2f-%.2f", s.vsBareMin, s.vsBareMax)
			}
			if s.kind == viaWatermill || s.kind == viaPython {
				vs = fmt.Sprintf("%.1fx", ref.rate/s.rate)
			}
			allocs := "-"
			if !math.IsNaN(s.allocs) {
				allocs = fmt.Sprintf("%.1f", s.allocs)
			}
			lines = append(lines, []string{transport, workload, s.name(), fmt.Sprint(s.rounds), fmt.Sprintf("%.0f", s.rate),
				ratio, span, vs, allocs, fmt.Sprintf("%.2f", s.cpu)})
		}
	}
	printColumns(w, "lllrrrrrrr", lines)
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(w, "%s %s: %s\n", r.transport, r.workload, r.note)
		}
	}
	reportTargets(w, rows)
}
