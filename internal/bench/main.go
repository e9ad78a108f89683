// Command bench is `make bench`: it runs the same messaging workloads through
// kombu-go's generated stubs, through the bare client library (amqp091-go,
// go-redis) and through Python Kombu, on the real brokers of this machine, in
// one run, and prints the rates side by side with their ratios and the
// allocations per message.
//
//	go run ./internal/bench [-n 20000] [-rounds 3] [-transports amqp,redis]
//
// SDK and bare runs alternate, round after round, and each keeps its best
// round, so that the noise of a shared 2-core machine hits both alike. The
// bare client does the same work as the SDK: it serializes each message with
// the same codec, sets the same properties, uses the same confirm mode,
// prefetch and acks.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

type config struct {
	n, pythonN, rounds int
	python             bool
}

// result is one measured run.
type result struct {
	rate   float64 // messages per second
	allocs float64 // heap allocations per message, in this process
}

// row is one line of the report.
type row struct {
	transport, workload string
	sdk, bare           result
	python              float64 // 0: not measured
	note                string
}

func main() {
	var cfg config
	transports := flag.String("transports", "amqp", "comma-separated transports to measure")
	flag.IntVar(&cfg.n, "n", 20000, "messages per workload")
	flag.IntVar(&cfg.pythonN, "python-n", 5000, "messages per Python Kombu workload (it is slow)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "alternating rounds per workload; the best of each side counts")
	flag.BoolVar(&cfg.python, "python", true, "measure Python Kombu too, when /usr/bin/python3 has kombu")
	flag.Parse()
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
			os.Exit(1)
		}
		rows = append(rows, rs...)
	}
	report(os.Stdout, cfg, rows)
}

func report(w *os.File, cfg config, rows []row) {
	fmt.Fprintf(w, "kombu-go benchmark: %d messages per workload, best of %d alternating rounds, %s %s/%s, %d CPUs\n\n",
		cfg.n, cfg.rounds, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tworkload\tSDK msg/s\tbare msg/s\tSDK/bare\tPython msg/s\tSDK/Python\tSDK allocs/msg\tbare allocs/msg\t")
	for _, r := range rows {
		py, vsPy := "-", "-"
		if r.python > 0 {
			py, vsPy = fmt.Sprintf("%.0f", r.python), fmt.Sprintf("%.1fx", r.sdk.rate/r.python)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.1f\t%.1f\t\n",
			r.transport, r.workload, r.sdk.rate, r.bare.rate, r.sdk.rate/r.bare.rate, py, vsPy, r.sdk.allocs, r.bare.allocs)
	}
	tw.Flush()
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(w, "\n%s %s: %s", r.transport, r.workload, r.note)
		}
	}
	fmt.Fprintln(w)
}

// measure runs fn, which handles n messages, and returns its rate and the
// heap allocations it made per message.
func measure(n int, fn func() error) (result, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := fn(); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return result{
		rate:   float64(n) / elapsed.Seconds(),
		allocs: float64(after.Mallocs-before.Mallocs) / float64(n),
	}, nil
}

// best runs sdk and bare alternately for the given rounds, with setup before
// each run, and keeps each side's best round.
func best(rounds, n int, setup func() error, sdk, bare func() error) (s, b result, err error) {
	for range rounds {
		for _, side := range []struct {
			fn  func() error
			out *result
		}{{bare, &b}, {sdk, &s}} {
			if err := setup(); err != nil {
				return s, b, err
			}
			r, err := measure(n, side.fn)
			if err != nil {
				return s, b, err
			}
			if r.rate > side.out.rate {
				*side.out = r
			}
		}
	}
	return s, b, nil
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
