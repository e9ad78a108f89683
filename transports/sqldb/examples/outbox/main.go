// Command outbox shows a transactional outbox: an order service stores an
// order and the event announcing it in ONE database transaction, and a
// kombu.Shovel relays the committed events from the database to the broker,
// where the fulfilment service consumes them. An order whose transaction
// rolls back is neither stored nor announced; a committed one is announced
// once, even if the broker is down when it commits (the event waits in the
// database until the shovel has it confirmed by the broker).
//
//	cd transports/sqldb
//	go run ./examples/outbox                       # SQLite file + in-process broker
//	KOMBU_DB_URL=postgresql://postgres@127.0.0.1:5432/test \
//	KOMBU_URL=amqp://guest:guest@127.0.0.1:5672// go run ./examples/outbox
//
// Its protobuf schema is examples/outbox/outbox.proto, generated with the
// other examples into gen/examples/outbox/v1. The program lives here, in
// the transports/sqldb module, rather than in examples/outbox: it imports
// the SQL transport (for sqldb.WithTx and the drivers), which the root
// module must not depend on (DESIGN §1: heavy clients stay in their
// transport's module), and a third module just for one example would be a
// go.mod, a replace and a tidy check more for no gain.
//
// The generated producer is used unchanged: under sqldb.WithTx(ctx, tx) its
// publish writes the message in tx. It declares its route's queue,
// outbox.fulfilment, in the database as it would on a broker, and that
// queue is the outbox: the shovel reads it and publishes each event, with
// its routing key, to the exchange it was published to
// (WithShovelKeepExchange), on the broker, where the same topology routes
// it into the broker's outbox.fulfilment for the fulfilment service. A
// service with several routes runs one shovel per route queue, or binds
// one relay queue to its exchange in the database and shovels that.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	outboxv1 "github.com/kombu-go/kombu/gen/examples/outbox/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"  // KOMBU_URL=amqp://...
	_ "github.com/kombu-go/kombu/transports/redis" // KOMBU_URL=redis://...
	"github.com/kombu-go/kombu/transports/sqldb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dbURL := os.Getenv("KOMBU_DB_URL")
	if dbURL == "" {
		dbURL = "sqlite:///" + filepath.Join(os.TempDir(), "kombu-outbox.db")
	}
	brokerURL := os.Getenv("KOMBU_URL")
	if brokerURL == "" {
		brokerURL = "memory://"
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	if err := runOutbox(ctx, dbURL, brokerURL, run, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// runOutbox places three orders, the second of which fails and rolls
// back, and waits until the fulfilment service has handled the two that
// committed. run makes the order ids of this run unique, so that a run on
// a shared database or broker is not confused by an earlier one.
func runOutbox(ctx context.Context, dbURL, brokerURL, run string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out = &syncWriter{w: out}

	db, err := openSQL(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS outbox_orders (
		id VARCHAR(64) PRIMARY KEY, customer VARCHAR(64) NOT NULL, amount_cents BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("creating outbox_orders: %w", err)
	}

	store, err := kombu.Dial(ctx, dbURL)
	if err != nil {
		return err
	}
	defer store.Close()
	broker, err := kombu.Dial(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer broker.Close()
	fmt.Fprintf(out, "outbox in %s, events to %s\n", store.URL(), broker.URL())

	// In the database: the producer's exchange and its route's queue, the
	// outbox. Declared before any transaction, so that the producer finds
	// them declared: SQLite allows one writer at a time, and inside a
	// transaction that writer is the transaction.
	topology := outboxv1.OrdersTopology()
	if err := topology.Declare(ctx, store); err != nil {
		return err
	}
	outbox := topology.Queues[0]

	// On the broker: the fulfilment service, whose consumer declares its
	// exchange, queue and binding before it returns.
	ids := []string{"O-" + run + "-1", "O-" + run + "-2", "O-" + run + "-3"}
	h := &fulfilment{out: out, want: map[string]bool{ids[0]: true, ids[2]: true}, seen: map[string]int{}}
	h.wg.Add(2)
	consumer, err := outboxv1.NewOrdersConsumer(broker, h)
	if err != nil {
		return err
	}
	consumed := make(chan error, 1)
	go func() { consumed <- consumer.Run(ctx) }()

	// The relay: from the outbox queue in the database to the same
	// exchange on the broker, each event acknowledged in the database only
	// once the broker confirmed it. It runs beside the service, as it would
	// in production; an event waits in the database until its transaction
	// commits, and for as long as the relay or the broker is down. (On
	// SQLite, kombu-go's connections to one file in one process share one
	// database connection: a publish in an order's transaction reads in
	// that transaction, so the relay waiting for the transaction's write
	// lock never holds it up.)
	shovel, err := kombu.NewShovel(store, outbox, broker, kombu.Exchange{},
		kombu.WithShovelKeepExchange(),
		kombu.WithShovelDeclare(kombu.ShovelDestination, outboxv1.OrdersTopology()))
	if err != nil {
		return err
	}
	shoveled := make(chan error, 1)
	go func() { shoveled <- shovel.Run(ctx) }()

	svc := &orderService{db: db, dollar: isPostgres(dbURL), events: outboxv1.NewOrdersProducer(store)}
	orders := []*outboxv1.OrderPlaced{
		{OrderId: ids[0], Customer: "ada", AmountCents: 1250},
		{OrderId: ids[1], Customer: "grace", AmountCents: -1}, // refused after the event is written: rolled back
		{OrderId: ids[2], Customer: "linus", AmountCents: 300},
	}
	for _, o := range orders {
		err := svc.place(ctx, o)
		switch {
		case errors.Is(err, errRefused):
			fmt.Fprintf(out, "order %s rolled back: %v\n", label(o.OrderId, run), err)
		case err != nil:
			return err
		default:
			fmt.Fprintf(out, "order %s committed with its event\n", label(o.OrderId, run))
		}
	}

	handled := make(chan struct{})
	go func() { h.wg.Wait(); close(handled) }()
	select {
	case <-handled:
	case err := <-shoveled:
		return fmt.Errorf("shovel: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the events: %w", ctx.Err())
	}
	// The shovel moves events in the order they were committed, so once the
	// third order's event is handled the second one's would have been too,
	// had it been published. Give a late duplicate a moment to show up.
	time.Sleep(200 * time.Millisecond)
	if err := shovel.Close(); err != nil {
		return err
	}
	if err := <-shoveled; err != nil {
		return fmt.Errorf("shovel: %w", err)
	}
	if err := consumer.Close(); err != nil {
		return err
	}
	if err := <-consumed; err != nil {
		return err
	}

	stored, err := svc.stored(ctx, ids)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, id := range ids {
		fmt.Fprintf(out, "order %s: stored %v, events handled %d\n", label(id, run), stored[i], h.seen[id])
	}
	st := shovel.Stats()
	fmt.Fprintf(out, "shovel moved %d event(s)\n", st.Moved)
	if h.seen[ids[0]] != 1 || h.seen[ids[2]] != 1 || h.seen[ids[1]] != 0 || !stored[0] || stored[1] || !stored[2] {
		return errors.New("the outbox did not deliver each committed order's event exactly once")
	}
	fmt.Fprintln(out, "every committed order announced once, the rolled-back one neither stored nor announced")
	return nil
}

// errRefused is the business failure that rolls an order back.
var errRefused = errors.New("amount must be positive")

// orderService stores orders. Its producer is the generated one, on a
// connection to the same database as db.
type orderService struct {
	db     *sql.DB
	dollar bool // PostgreSQL's $n placeholders
	events *outboxv1.OrdersProducer
}

// place stores the order and its event in one transaction: both or
// neither. The event is written before the order is checked, so that the
// refused order shows that a rollback takes its event with it.
func (s *orderService) place(ctx context.Context, o *outboxv1.OrderPlaced) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, s.rebind("INSERT INTO outbox_orders (id, customer, amount_cents) VALUES (?, ?, ?)"),
		o.OrderId, o.Customer, o.AmountCents); err != nil {
		return err
	}
	if err := s.events.Placed(sqldb.WithTx(ctx, tx), o, kombu.WithMessageID(o.OrderId)); err != nil {
		return err
	}
	if o.AmountCents <= 0 {
		return errRefused
	}
	return tx.Commit()
}

// stored reports which of ids have a row.
func (s *orderService) stored(ctx context.Context, ids []string) ([]bool, error) {
	found := make([]bool, len(ids))
	for i, id := range ids {
		var n int
		if err := s.db.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM outbox_orders WHERE id = ?"), id).Scan(&n); err != nil {
			return nil, err
		}
		found[i] = n == 1
	}
	return found, nil
}

// fulfilment implements the generated outboxv1.OrdersHandler.
type fulfilment struct {
	outboxv1.UnimplementedOrdersHandler

	out  io.Writer
	mu   sync.Mutex
	want map[string]bool // this run's committed orders not yet handled
	seen map[string]int  // events handled, by order id
	wg   sync.WaitGroup
}

func (f *fulfilment) Placed(ctx context.Context, m *outboxv1.OrderPlaced, msg *kombu.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[m.OrderId]++
	if f.want[m.OrderId] {
		delete(f.want, m.OrderId)
		fmt.Fprintf(f.out, "fulfilment handled order %s for %s, $%d.%02d (routing key %s)\n",
			m.OrderId[strings.LastIndex(m.OrderId, "-")+1:], m.Customer, m.AmountCents/100, m.AmountCents%100, msg.DeliveryInfo.RoutingKey)
		f.wg.Done()
	}
	return nil // an event of an earlier run on a shared broker: acked, not counted
}

// label is an order id without the run, for stable output.
func label(id, run string) string { return strings.TrimPrefix(id, "O-"+run+"-") }

// isPostgres reports whether rawURL names a PostgreSQL database.
func isPostgres(rawURL string) bool {
	return strings.Contains(strings.SplitN(rawURL, "://", 2)[0], "postgres")
}

// openSQL opens the database a kombu-go SQL URL names with database/sql.
func openSQL(rawURL string) (*sql.DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	u.RawQuery = "" // kombu-go's options (table_name_prefix, ...) are not the driver's
	scheme := strings.TrimPrefix(strings.TrimPrefix(u.Scheme, "sqla+"), "sqlalchemy+")
	scheme, _, _ = strings.Cut(scheme, "+")
	switch scheme {
	case "sqlite":
		return sql.Open("sqlite", u.Path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	case "postgres", "postgresql":
		u.Scheme = "postgres"
		return sql.Open("pgx", u.String())
	case "mysql":
		c := mysql.NewConfig()
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
		c.Net, c.Addr, c.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
		return sql.Open("mysql", c.FormatDSN())
	}
	return nil, fmt.Errorf("outbox: %q is not a SQL URL (sqlite:///path, postgresql://, mysql://)", rawURL)
}

// rebind writes the ? placeholders of q as PostgreSQL's $1, $2, ... where
// the database is PostgreSQL.
func (s *orderService) rebind(q string) string {
	if !s.dollar {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// syncWriter serializes writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
