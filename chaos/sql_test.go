package chaos

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/sqldb" // postgresql://, mysql://
)

// The SQL transport's faults (issue 14, point 7), each against a database
// server of the test's own (brokertest.StartPostgres, StartMariaDB), so
// that restarting or killing it disturbs no one else and needs no service
// control: the shared servers on 5432 and 3306 are never touched.
//
// Each test publishes from 4 goroutines (150 messages a second in all,
// every publish bounded by 20 s) and consumes (prefetch 20, 4 handlers) on
// another connection, for 2 s, injects its fault, and goes on for 4 s after
// the fault is removed. The verdict: no confirmed message lost, nothing
// unexpected, the consumer still running; duplicates are allowed (the
// transport is at least once: a message taken by a connection that was
// lost before its ack reached the database comes back when that
// connection's lease runs out, 3 s here) and counted in the table.

const (
	sqlWorkers     = 4
	sqlRate        = 150
	sqlTimeout     = 20 * time.Second
	sqlBefore      = 2 * time.Second
	sqlAfter       = 4 * time.Second
	sqlLease       = "lease_timeout=3"
	sqlPrefetch    = 20
	sqlConcurrency = 4
)

// sqlLoad runs the publish+consume load on rawURL around fault, which
// injects the fault (led.Inject, led.Remove) and returns, and checks the
// history. It returns the verdict for the test's own checks and notes.
func sqlLoad(t *testing.T, row *Row, led *Ledger, rawURL string, fault func()) Result {
	t.Helper()
	qname := uniq(t, "q")
	sink := &logSink{}
	prod := dial(t, rawURL, uniq(t, "producer"), sink)
	cons := dial(t, rawURL, uniq(t, "consumer"), sink)
	rc := consume(t, cons, kombu.Queue{Name: qname}, led, "consumer", 5*time.Millisecond,
		kombu.WithPrefetch(sqlPrefetch), kombu.WithConcurrency(sqlConcurrency))

	pctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := make(chan struct{})
	var pubErrs sync.Map // distinct error texts
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: sqlWorkers, rate: sqlRate, timeout: sqlTimeout,
			onResult: func(_ string, o Outcome, err error) {
				if o != Confirmed {
					pubErrs.Store(err.Error(), true)
				}
			}}.run(pctx)
	}()
	time.Sleep(sqlBefore)
	fault()
	time.Sleep(sqlAfter)
	cancel()
	<-pubDone

	missing := led.WaitDelivered(ctxFor(t, 40*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed within 40 s", len(missing))
	}
	assertCommon(t, r, sqlTimeout, -1) // duplicates allowed: counted, not bounded
	if len(r.NeverAcked) > 0 {
		t.Errorf("%d messages delivered but never acked successfully: %s", len(r.NeverAcked), short(r.NeverAcked))
	}
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s after the fault was removed, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	var texts []string
	pubErrs.Range(func(k, _ any) bool { texts = append(texts, k.(string)); return true })
	row.Note("max publish %v; failed %d, gave up %d%s; duplicates %d (%d not marked redelivered)",
		r.MaxPublishLatency.Round(10*time.Millisecond), r.Failed, r.Unknown, errorsNote(texts),
		len(r.Duplicated), len(r.RepeatNotRedelivered))
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if t.Failed() {
		sink.dump(t, 40)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
	}
	return r
}

func errorsNote(texts []string) string {
	if len(texts) == 0 {
		return ""
	}
	return " (" + short(texts) + ")"
}

// 16. PostgreSQL stopped (pg_ctl stop -m fast, as pg_ctlcluster stop and
// restart do: sessions terminated, open transactions rolled back) for 2 s
// and started again, while publishing and consuming.
func TestSQL16PostgresRestart(t *testing.T) {
	row := figure(t, "16", "PostgreSQL restart: private cluster stopped (pg_ctl stop -m fast) for 2 s and started again during publish+consume; lease_timeout 3 s", "postgresql")
	pg := brokertest.StartPostgres(t)
	led := NewLedger("t16")
	var down time.Duration
	sqlLoad(t, row, led, pg.URL()+"?"+sqlLease, func() {
		led.Inject()
		stopped := time.Now()
		pg.Stop()
		sleepUntil(stopped.Add(2 * time.Second))
		pg.Start()
		down = time.Since(stopped)
		led.Remove()
	})
	row.Note("PostgreSQL down %v (stop → start returned)", down.Round(100*time.Millisecond))
	if t.Failed() {
		t.Logf("server log:\n%s", pg.Log())
	}
}

// 16b. The SDK's sessions killed by the server (pg_terminate_backend of
// every client backend) four times, 1.5 s apart, while publishing and
// consuming: what an administrator, a pooler or a failover does.
func TestSQL16bPostgresBackendKilled(t *testing.T) {
	row := figure(t, "16b", "pg_terminate_backend of every SDK session (producer, consumer, listener) 4 times 1.5 s apart during publish+consume; lease_timeout 3 s", "postgresql")
	pg := brokertest.StartPostgres(t)
	led := NewLedger("t16b")
	var killed []string
	sqlLoad(t, row, led, pg.URL()+"?"+sqlLease, func() {
		led.Inject()
		for i := range 4 {
			if i > 0 {
				time.Sleep(1500 * time.Millisecond)
			}
			out, err := pg.Psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
			if err != nil {
				t.Errorf("pg_terminate_backend: %v: %s", err, out)
			}
			killed = append(killed, out)
		}
		led.Remove()
	})
	row.Note("sessions terminated per round: %s", strings.Join(killed, ", "))
	for _, k := range killed {
		if k == "0" {
			t.Errorf("a round terminated no session: the test did not exercise the fault (%v)", killed)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", pg.Log())
	}
}

// 16c. MariaDB stopped (SIGTERM, as a service manager does) for 2 s and
// started again, while publishing and consuming.
func TestSQL16cMariaDBRestart(t *testing.T) {
	row := figure(t, "16c", "MariaDB restart: private mariadbd stopped (SIGTERM) for 2 s and started again during publish+consume; lease_timeout 3 s, polling 50 ms", "mysql")
	db := brokertest.StartMariaDB(t)
	led := NewLedger("t16c")
	var down time.Duration
	sqlLoad(t, row, led, db.URL()+"?"+sqlLease+"&polling_interval=0.05", func() {
		led.Inject()
		stopped := time.Now()
		db.Stop()
		sleepUntil(stopped.Add(2 * time.Second))
		db.Start()
		down = time.Since(stopped)
		led.Remove()
	})
	row.Note("MariaDB down %v (SIGTERM → accepting connections again)", down.Round(100*time.Millisecond))
	if t.Failed() {
		t.Logf("server log:\n%s", db.Log())
	}
}
