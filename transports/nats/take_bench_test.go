package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombu-go/kombu/runtime/transport"
)

// BenchmarkTake measures the store's own side of consuming, apart from
// the virtual connection and the runtime above it: take a batch (a pull
// request through the puller), ack each message; beside it, nats.go's
// Consume acking each message of a stream of the same kind. Both report
// this process's CPU time per message (cpu-µs/msg), the figure the bench's
// consume row compares. The stream's messages are 300 bytes, about an
// envelope of the bench's order.
//
//	go test -run '^$' -bench Take -benchtime 20000x -cpuprofile cpu.out
func BenchmarkTake(b *testing.B) {
	addr := os.Getenv("KOMBU_TEST_NATS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:4222"
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
		b.Skip("NATS not reachable:", err)
	} else {
		c.Close()
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	prefix := "KB" + strings.ToUpper(hex.EncodeToString(rb[:]))
	u, err := transport.Parse("nats://" + addr + "?stream_prefix=" + prefix + "&subject_prefix=" + strings.ToLower(prefix))
	if err != nil {
		b.Fatal(err)
	}
	o, err := parseOptions(u)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	payload := make([]byte, 300)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	connect := func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(o.server)
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		return nc, js
	}
	fill := func(js jetstream.JetStream, subject string, n int) {
		for i := 0; i < n; i++ {
			if _, err := js.PublishAsync(subject, payload); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not confirmed")
		}
	}
	cleanupNC, cleanupJS := connect()
	defer cleanupNC.Close()
	defer func() {
		for n := range cleanupJS.StreamNames(ctx).Name() {
			if strings.HasPrefix(n, prefix+"_") {
				_ = cleanupJS.DeleteStream(ctx, n)
			}
		}
	}()

	for _, batch := range []int{1, 10, 100} {
		b.Run("store/batch="+itoa(batch), func(b *testing.B) {
			nc, js := connect()
			s := newStore(nc, js, o, slog.New(slog.DiscardHandler))
			if err := s.start(); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			q := "take" + itoa(batch)
			if err := s.DeclareQueue(ctx, q); err != nil {
				b.Fatal(err)
			}
			_, subject, _ := s.names(q)
			fill(js, subject, b.N)
			b.ResetTimer()
			before := cpuTime()
			for n := 0; n < b.N; {
				ts, err := s.TakeBatch(ctx, q, min(batch, b.N-n))
				if err != nil {
					b.Fatal(err)
				}
				for _, t := range ts {
					if err := s.AckQuick(t.Receipt); err != nil {
						b.Fatal(err)
					}
				}
				n += len(ts)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
	b.Run("nats.go-Consume", func(b *testing.B) {
		nc, js := connect()
		defer nc.Close()
		st, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: prefix + "_BARE", Subjects: []string{strings.ToLower(prefix) + ".bare"},
			Retention: jetstream.WorkQueuePolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: -1,
		})
		if err != nil {
			b.Fatal(err)
		}
		fill(js, strings.ToLower(prefix)+".bare", b.N)
		msgs := make(chan jetstream.Msg, 1)
		b.ResetTimer()
		before := cpuTime()
		cc, err := c.Consume(func(m jetstream.Msg) { msgs <- m }, jetstream.PullMaxMessages(100))
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < b.N; n++ {
			if err := (<-msgs).Ack(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/msg")
		cc.Stop()
	})
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// cpuTime is this process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
