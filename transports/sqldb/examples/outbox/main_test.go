package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	outboxv1 "github.com/kombu-go/kombu/gen/examples/outbox/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/exampletest"
)

// The example as it runs by default: a SQLite file and the in-process
// broker, no server.
func TestOutboxOnSQLiteAndMemory(t *testing.T) {
	check(t, "sqlite:///"+filepath.Join(t.TempDir(), "orders.db"), "memory:///outbox-test")
}

// The example as it runs in production: PostgreSQL and RabbitMQ. The
// kombu tables get a prefix of the test's own, so that the shared database
// keeps no outbox of this run.
func TestOutboxOnPostgreSQLAndRabbitMQ(t *testing.T) {
	pg := brokertest.PostgresURL(t)
	amqp := brokertest.AMQPURL(t)
	exampletest.Purge(t, amqp, outboxv1.OrdersTopology())
	prefix := "t" + randomHex(4) + "_"
	t.Cleanup(func() { dropTables(t, pg, prefix) })
	check(t, pg+"?table_name_prefix="+prefix+"&polling_interval=0.05", amqp)
}

// Each committed order's event is handled once; the order that rolled
// back is neither stored nor announced.
func check(t *testing.T, dbURL, brokerURL string) {
	t.Helper()
	var out bytes.Buffer
	if err := runOutbox(context.Background(), dbURL, brokerURL, randomHex(3), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"order 1 committed with its event",
		"order 2 rolled back: amount must be positive",
		"order 3 committed with its event",
		"fulfilment handled order 1 for ada, $12.50 (routing key order.placed)",
		"fulfilment handled order 3 for linus, $3.00 (routing key order.placed)",
		"order 1: stored true, events handled 1",
		"order 2: stored false, events handled 0",
		"order 3: stored true, events handled 1",
		"every committed order announced once, the rolled-back one neither stored nor announced",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// dropTables drops the kombu tables a test made under prefix.
func dropTables(t *testing.T, pgURL, prefix string) {
	db, err := openSQL(pgURL)
	if err != nil {
		t.Log(err)
		return
	}
	defer db.Close()
	for _, s := range []string{"kombu_go_exchange", "kombu_go_binding", "kombu_go_owner", "kombu_go_lease", "kombu_go_rejected", "kombu_go_delayed", "kombu_message", "kombu_queue"} {
		if _, err := db.Exec("DROP TABLE IF EXISTS " + prefix + s + " CASCADE"); err != nil {
			t.Logf("drop %s%s: %v", prefix, s, err)
		}
	}
}
