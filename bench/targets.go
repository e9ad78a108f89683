package main

import (
	"fmt"
	"io"
	"math"
	"testing"
)

// target is one of issue 13's goals for a workload, checked against one
// side's figures. Zero fields are not checked.
type target struct {
	who       kind
	minRate   float64 // msg/s
	maxAllocs float64 // allocations per message
	// maxExtraAllocs bounds the allocations per message above the bare
	// client's, which encodes and decodes the same message: what the SDK
	// and the broker add to what any program sending it pays.
	maxExtraAllocs float64
	minVsBare      float64 // rate ÷ the bare client's (median of the rounds)
	minVsPython    float64 // rate ÷ Python Kombu's
}

// check is one criterion of a target, evaluated.
type check struct {
	goal, got string
	met       bool
	aside     string
}

// checks evaluates t against row r; a side the run did not measure
// (Python Kombu missing, say) yields nothing.
func (t target) checks(r row) []check {
	s, ok := r.find(t.who)
	if !ok {
		return nil
	}
	var cs []check
	if t.minRate > 0 {
		cs = append(cs, check{goal: fmt.Sprintf("≥ %.0f msg/s", t.minRate), got: fmt.Sprintf("%.0f", s.rate), met: s.rate >= t.minRate})
	}
	if t.maxAllocs > 0 {
		c := check{goal: fmt.Sprintf("≤ %.0f allocs/msg", t.maxAllocs), got: fmt.Sprintf("%.1f", s.allocs), met: s.allocs <= t.maxAllocs}
		if b, ok := r.find(bare); ok {
			c.aside = fmt.Sprintf("%.1f more than bare's %.1f", s.allocs-b.allocs, b.allocs)
		}
		cs = append(cs, c)
	}
	if b, ok := r.find(bare); ok && t.maxExtraAllocs > 0 {
		extra := s.allocs - b.allocs
		cs = append(cs, check{goal: fmt.Sprintf("≤ %.0f allocs/msg above bare", t.maxExtraAllocs), got: fmt.Sprintf("%.1f", extra),
			met: extra <= t.maxExtraAllocs, aside: fmt.Sprintf("%.1f in all, bare's %.1f", s.allocs, b.allocs)})
	}
	if t.minVsBare > 0 && !math.IsNaN(s.vsBare) {
		// Three decimals: 0.899 is short of 0.90, which two would hide.
		cs = append(cs, check{goal: fmt.Sprintf("≥ %.2f × bare", t.minVsBare), got: fmt.Sprintf("%.3f", s.vsBare), met: s.vsBare >= t.minVsBare,
			aside: fmt.Sprintf("rounds %.2f-%.2f", s.vsBareMin, s.vsBareMax)})
	}
	if py, ok := r.find(viaPython); ok && t.minVsPython > 0 {
		vs := s.rate / py.rate
		cs = append(cs, check{goal: fmt.Sprintf("≥ %.0f × Python Kombu", t.minVsPython), got: fmt.Sprintf("%.1f", vs), met: vs >= t.minVsPython})
	}
	return cs
}

// reportTargets prints each target's criteria with the figure measured.
func reportTargets(w io.Writer, rows []row) {
	var lines [][]string
	for _, r := range rows {
		for _, t := range r.targets {
			for _, c := range t.checks(r) {
				verdict := "met"
				if !c.met {
					verdict = "NOT MET"
				}
				lines = append(lines, []string{"", r.transport, r.workload, t.who.String(), c.goal, c.got, verdict, c.aside})
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "\nthe speed targets of issues 13, 16 and 19 (on a quiet machine; a loaded one reads low):")
		printColumns(w, "lllllrll", lines)
	}
}

// decodeAllocs is how many allocations decoding one order costs.
func decodeAllocs() float64 {
	body := mustEncode()
	return testing.AllocsPerRun(1000, func() {
		if err := decode(body); err != nil {
			panic(err)
		}
	})
}

func mustEncode() []byte {
	body, err := encode()
	if err != nil {
		panic(err)
	}
	return body
}
