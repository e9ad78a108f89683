package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestInterleavedTakesTurnsInRotation(t *testing.T) {
	var calls []string
	record := func(name string) run {
		return func(count int) error {
			calls = append(calls, fmt.Sprintf("%s%d", name, count))
			return nil
		}
	}
	setups := 0
	w := workload{
		n: 5, chunk: 2,
		setup: func() (func() error, error) {
			setups++
			calls = append(calls, "setup")
			return func() error { calls = append(calls, "teardown"); return nil }, nil
		},
		sides: []side{{sdkDefaults, "", record("a")}, {bare, "", record("b")}, {viaWatermill, "", record("c")}},
	}
	samples, err := interleaved(config{rounds: 2}, w)
	if err != nil {
		t.Fatal(err)
	}
	// Each round: a warm-up turn each, then sets of turns whose first side
	// moves on by one from set to set and from round to round, the last set
	// short, until each side has handled n.
	want := "setup a2 b2 c2 a2 b2 c2 b2 c2 a2 c1 a1 b1 teardown " +
		"setup a2 b2 c2 b2 c2 a2 c2 a2 b2 a1 b1 c1 teardown"
	if got := strings.Join(calls, " "); got != want {
		t.Errorf("turns:\n got %s\nwant %s", got, want)
	}
	if setups != 2 {
		t.Errorf("%d setups, want one per round", setups)
	}
	for i, s := range samples {
		if len(s) != 2 || s[0].n != 5 || s[1].n != 5 {
			t.Errorf("side %d: samples %+v, want two rounds of 5 messages", i, s)
		}
	}
}

func TestInterleavedStopsAtFirstError(t *testing.T) {
	tornDown := false
	w := workload{
		chunk: 1,
		setup: func() (func() error, error) {
			return func() error { tornDown = true; return nil }, nil
		},
		sides: []side{{bare, "", func(int) error { return fmt.Errorf("broken") }}},
	}
	if _, err := interleaved(config{n: 3, rounds: 1}, w); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err = %v, want the side's error", err)
	}
	if !tornDown {
		t.Error("the round was not torn down after the error")
	}
}

// samplesAt makes one sample per round at the given rates.
func samplesAt(rates ...float64) []sample {
	var s []sample
	for _, r := range rates {
		s = append(s, sample{n: 1000, elapsed: time.Duration(float64(time.Second) * 1000 / r), allocs: 5000, cpu: 10 * time.Millisecond})
	}
	return s
}

func TestSummarizeComparesEachRoundWithBare(t *testing.T) {
	sides := []side{{kind: sdkDefaults}, {kind: bare}}
	rows := summarize(sides, [][]sample{samplesAt(100, 300, 200), samplesAt(200, 300, 400)}, 1)
	sdk, b := rows[0], rows[1]
	if math.Abs(sdk.rate-200) > 1e-6 || math.Abs(b.rate-300) > 1e-6 {
		t.Errorf("median rates %.1f and %.1f, want 200 and 300", sdk.rate, b.rate)
	}
	// The rounds' ratios are 0.5, 1 and 0.5: the median is not the ratio
	// of the median rates (0.67).
	if math.Abs(sdk.vsBare-0.5) > 1e-9 || math.Abs(sdk.vsBareMin-0.5) > 1e-9 || math.Abs(sdk.vsBareMax-1) > 1e-9 {
		t.Errorf("×bare %.2f (%.2f-%.2f), want 0.50 (0.50-1.00)", sdk.vsBare, sdk.vsBareMin, sdk.vsBareMax)
	}
	if b.vsBare != 1 {
		t.Errorf("bare's ×bare = %v, want 1", b.vsBare)
	}
	if sdk.allocs != 5 || sdk.cpu != 10 || sdk.rounds != 3 {
		t.Errorf("allocs %v, CPU %v µs, rounds %d; want 5, 10, 3", sdk.allocs, sdk.cpu, sdk.rounds)
	}
}

func TestSummarizeWithoutBare(t *testing.T) {
	rows := summarize([]side{{kind: sdkTuned}}, [][]sample{samplesAt(100)}, -1)
	if !math.IsNaN(rows[0].vsBare) {
		t.Errorf("×bare = %v without a bare side, want NaN", rows[0].vsBare)
	}
}

func TestTargetChecks(t *testing.T) {
	r := row{sides: []sideRow{
		{kind: sdkDefaults, result: result{rate: 900, allocs: 14}, vsBare: 0.9},
		{kind: bare, result: result{rate: 1000, allocs: 8}, vsBare: 1},
		{kind: viaPython, result: result{rate: 100}},
	}}
	checks := target{who: sdkDefaults, minRate: 1000, maxAllocs: 14, maxExtraAllocs: 5, minVsBare: 0.9, minVsPython: 10}.checks(r)
	var got []string
	for _, c := range checks {
		got = append(got, fmt.Sprintf("%s:%v", c.goal, c.met))
	}
	want := "≥ 1000 msg/s:false ≤ 14 allocs/msg:true ≤ 5 allocs/msg above bare:false ≥ 0.90 × bare:true ≥ 10 × Python Kombu:false"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("checks %q, want %q", g, want)
	}
	if !strings.Contains(checks[1].aside, "6.0 more than bare's 8.0") {
		t.Errorf("allocs aside %q does not compare with bare", checks[1].aside)
	}
	// A side the run did not measure (no Python Kombu, no tuned side)
	// yields no verdict rather than a false one.
	if c := (target{who: sdkTuned, minRate: 1}).checks(r); len(c) != 0 {
		t.Errorf("checks of a missing side: %+v", c)
	}
	r.sides = r.sides[:2]
	if c := (target{who: sdkDefaults, minVsPython: 5}).checks(r); len(c) != 0 {
		t.Errorf("checks against a missing Python Kombu: %+v", c)
	}
}

func TestPrintColumnsAligns(t *testing.T) {
	var b strings.Builder
	printColumns(&b, "lr", [][]string{{"side", "µs"}, {"bare", "1.25"}, {"SDK tuned", "10.5"}})
	want := "side         µs\nbare       1.25\nSDK tuned  10.5\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// The memory workloads run in-process, so the whole harness can run here:
// every side takes its turns, held consumers start and stop, and each row
// has the sides it should.
func TestMemoryWorkloadsRun(t *testing.T) {
	tab := &table{cfg: config{n: 20, rounds: 1}, transport: "memory"}
	if err := benchMemory(context.Background(), tab); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"publish, one by one":        "SDK defaults, bare (Go channel), Watermill (GoChannel, persistent)",
		"publish, 16 goroutines":     "SDK defaults (one connection), SDK pool (ProducerPool, limit 4), SDK pool (ProducerPool, limit 10), SDK pool (ProducerPool, limit 16)",
		"consume, ack each":          "SDK defaults, SDK tuned (prefetch 100), bare (Go channel)",
		"publish → consume, at once": "SDK defaults, SDK tuned (prefetch 100), bare (Go channel, buffer 100), Watermill (GoChannel)",
	}
	if len(tab.rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(tab.rows), len(want))
	}
	for _, r := range tab.rows {
		var names []string
		for _, s := range r.sides {
			names = append(names, s.name())
			if s.rounds != 1 || !(s.rate > 0) || s.allocs < 0 {
				t.Errorf("%s, %s: rounds %d, rate %v, allocs %v", r.workload, s.name(), s.rounds, s.rate, s.allocs)
			}
		}
		if got := strings.Join(names, ", "); got != want[r.workload] {
			t.Errorf("%s: sides %s, want %s", r.workload, got, want[r.workload])
		}
		// The pool rows compare each pool with one connection.
		if r.workload == "publish, 16 goroutines" {
			for i, s := range r.sides {
				if s.reference != (i == 0) || !(s.vsBare > 0) {
					t.Errorf("%s, %s: reference %v, ×one connection %v", r.workload, s.name(), s.reference, s.vsBare)
				}
			}
		}
	}
}
