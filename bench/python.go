package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
)

const pythonBin = "/usr/bin/python3"

// hasPythonKombu reports whether Debian's Python Kombu is installed, with
// redis-py for its Redis transport.
func hasPythonKombu() bool {
	return exec.Command(pythonBin, "-c", "import kombu, redis").Run() == nil
}

// pythonResult is what kombu_bench.py measured.
type pythonResult struct {
	label string
	rate  float64 // messages per second
	cpu   float64 // CPU µs per message of the Python process, while timed
}

// pythonSide returns a workload's Python Kombu side: kombu_bench.py running
// workload (publish-confirmed, publish-unconfirmed, consume) on url with
// the benchmark's exchange, routing key and queue. prepare, if set, runs
// first with the message count (to fill the queue for consume).
func pythonSide(url, workload, label string, prepare func(n int) error) func(n int) (pythonResult, error) {
	return func(n int) (pythonResult, error) {
		if prepare != nil {
			if err := prepare(n); err != nil {
				return pythonResult{}, err
			}
		}
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "kombu_bench.py")
		out, err := exec.Command(pythonBin, script, url, benchExchange, benchRoutingKey, benchBinding, benchQueue, strconv.Itoa(n), workload).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return pythonResult{}, fmt.Errorf("%v: %s", err, ee.Stderr)
			}
			return pythonResult{}, err
		}
		var r struct {
			Rate  float64 `json:"rate"`
			CPUus float64 `json:"cpu_us_per_msg"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			return pythonResult{}, fmt.Errorf("output %q: %v", out, err)
		}
		return pythonResult{label: label, rate: r.Rate, cpu: r.CPUus}, nil
	}
}
