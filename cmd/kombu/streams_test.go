package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kombu-go/kombu/internal/brokertest"
)

// The streaming brokers: the machine's NATS server with JetStream, and a
// kfake cluster (franz-go's Kafka in a process) run from the kafka
// module's kafkatest/cmd/kfake, whose module has the go line kfake needs.
func init() {
	targets = append(targets,
		target{name: "nats", url: natsURL, requeueUncounted: true},
		// Kafka keeps bindings in each connection, as Kombu's transport
		// does: another process reaches a queue through the default
		// exchange (its topic) only.
		target{name: "kafka", url: kafkaURL, defaultExchangeOnly: true},
	)
}

// natsURL is the local NATS server (KOMBU_TEST_NATS_ADDR, else
// 127.0.0.1:4222) with stream and subject prefixes of the test's own; the
// streams it made are deleted after it.
func natsURL(t testing.TB) string {
	addr := os.Getenv("KOMBU_TEST_NATS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:4222"
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		brokertest.Unavailable(t, "NATS not reachable at "+addr+": "+err.Error())
		return ""
	}
	c.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "KCLI" + strings.ToUpper(hex.EncodeToString(b[:]))
	t.Cleanup(func() {
		nc, err := nats.Connect("nats://" + addr)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return
		}
		for name := range js.StreamNames() {
			if strings.Contains(name, prefix) {
				_ = js.DeleteStream(name)
			}
		}
	})
	return "nats://" + addr + "?stream_prefix=" + prefix + "&subject_prefix=" + strings.ToLower(prefix)
}

var (
	kfakeOnce  sync.Once
	kfakeAddr  string
	kfakeErr   error
	kfakeStdin io.WriteCloser // kfake exits when it closes: held for the test binary's life
)

// kafkaURL is a kfake cluster of one broker, started once for the test
// binary and stopped when its standard input closes (at the binary's exit).
func kafkaURL(t testing.TB) string {
	kfakeOnce.Do(func() {
		cmd := exec.Command("go", "run", "./cmd/kfake", "-brokers", "1")
		cmd.Dir = "../../transports/kafka/kafkatest"
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			kfakeStdin, err = cmd.StdinPipe()
		}
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			kfakeErr = err
			return
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			kfakeErr = err
			return
		}
		kfakeAddr = strings.Split(strings.TrimSpace(line), ",")[0]
	})
	if kfakeErr != nil {
		t.Fatalf("kfake: %v", kfakeErr)
	}
	return "kafka://" + kfakeAddr
}
