package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

type moveFlags struct {
	toURL      string
	exType     string
	routingKey string
	keyGiven   bool
	count      int
	batch      int
	dryRun     bool
	follow     bool
}

func moveVerb() *verb {
	f := &moveFlags{}
	return &verb{
		name:    "move",
		summary: "move a queue's messages to an exchange (replay a dead-letter queue)",
		usage:   "<queue> [exchange]",
		help: `Moves the messages of a queue to an exchange, on the same broker or, with
--to-url, on another: a dead-letter queue back to the exchange its
messages failed from, or one broker's backlog to another. The exchange
omitted (or "") is the default exchange, which routes each message by its
routing key to the queue of that name (--routing-key sets it).

It moves with kombu.Shovel: at least once, nothing lost. Each message is
acknowledged at the source only after the destination confirmed its copy;
a message the destination routes nowhere stops the move and goes back to
the source. Bodies, headers and properties are moved as they are.

Before taking anything it checks that the queue and the exchange exist:
an exchange that does not exist ends the command (exit 3) with nothing
taken. Without --follow it moves as many messages as the queue held when
it began (what arrives meanwhile, or is dead-lettered again, stays), or
--count. Progress shows on stderr. Ctrl-C stops it: the batch in flight
finishes, the messages not yet moved go back to the queue, the progress so
far is reported and the command exits 130. A message whose confirm and
acknowledgement were cut off may then be in both places (at least once,
never lost).

Example:
  kombu move --url amqp://guest:guest@localhost// orders.dlq shop
  kombu move --dry-run orders.dlq shop
  kombu move --url redis://localhost:6379/0 --to-url amqp://guest:guest@rabbit// outbox events`,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.StringVar(&f.exType, "exchange-type", "", exchangeTypeUsage)
			fs.StringVar(&f.toURL, "to-url", "", "the destination broker (default: the --url broker)")
			fs.Func("routing-key", "publish every message with this routing key (default: each message's own)", func(s string) error {
				f.routingKey, f.keyGiven = s, true
				return nil
			})
			fs.IntVar(&f.count, "count", 0, "move at most this many messages (0: the queue's depth at the start)")
			fs.IntVar(&f.batch, "batch", 100, "messages published per batch")
			fs.BoolVar(&f.dryRun, "dry-run", false, "check the queue and exchange and say how many messages would move; take nothing")
			fs.BoolVar(&f.follow, "follow", false, "keep moving what arrives until --count or Ctrl-C")
		},
		run: func(e *env, args []string) error { return runMove(e, f, args) },
	}
}

func runMove(e *env, f *moveFlags, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usagef("want a queue and an exchange (got %d arguments)", len(args))
	}
	queue, exchange := args[0], ""
	if len(args) == 2 {
		exchange = args[1]
	}
	if f.count < 0 || f.batch < 1 {
		return usagef("--count not negative, --batch at least 1")
	}
	src, err := e.dial(e.url)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := src
	if f.toURL != "" && f.toURL != e.url {
		if dst, err = e.dial(f.toURL); err != nil {
			return fmt.Errorf("destination: %s", mask(err.Error(), f.toURL))
		}
		defer dst.Close()
	}
	ctx, cancel := e.opCtx()
	info, err := kombu.Queue{Name: queue}.Inspect(ctx, src)
	cancel()
	if err != nil {
		return err
	}
	// The exchange is checked, never declared: declaring it would need its
	// type and flags, and moving into a misspelt name must take nothing.
	dstURL := e.url
	if f.toURL != "" {
		dstURL = f.toURL
	}
	ex, err := exchangeFor(dstURL, exchange, f.exType)
	if err != nil {
		return err
	}
	if exchange != "" {
		ctx, cancel := e.opCtx()
		err := ex.Inspect(ctx, dst)
		cancel()
		if err != nil {
			if errors.Is(err, kombu.ErrNotFound) {
				return fmt.Errorf("exchange %s does not exist at the destination (nothing was taken from %s): %w", exchange, queue, err)
			}
			return err
		}
	}
	total := info.Messages
	if f.count > 0 && (f.follow || f.count < total) {
		total = f.count
	}
	target := describeExchange(exchange)
	if f.dryRun {
		if e.output == "json" {
			writeJSON(e.stdout, map[string]any{"dry_run": true, "queue": queue, "exchange": exchange, "would_move": total})
		} else {
			fmt.Fprintf(e.stdout, "dry run: would move %d message(s) from queue %s to %s; nothing taken\n", total, queue, target)
		}
		return nil
	}
	if total == 0 && !f.follow {
		e.moveReport(queue, exchange, kombu.ShovelStats{}, 0, nil)
		return nil
	}
	bar := &progress{e: e, total: total, start: time.Now()}
	opts := []kombu.ShovelOption{
		kombu.WithShovelPassiveSource(),
		kombu.WithShovelBatchSize(f.batch),
		kombu.WithShovelProgress(bar.update),
		kombu.WithShutdownTimeout(10 * time.Second),
	}
	if f.keyGiven {
		opts = append(opts, kombu.WithShovelRoutingKey(f.routingKey))
	}
	if f.count > 0 {
		opts = append(opts, kombu.WithShovelLimit(f.count))
	}
	if !f.follow {
		opts = append(opts, kombu.WithShovelDrain())
	}
	sh, err := kombu.NewShovel(src, kombu.Queue{Name: queue}, dst, ex, opts...)
	if err != nil {
		return err
	}
	runErr := sh.Run(e.ctx)
	bar.finish()
	stats := sh.Stats()
	if runErr == nil && e.ctx.Err() != nil {
		runErr = errInterrupted
	}
	e.moveReport(queue, exchange, stats, total, runErr)
	return runErr
}

func describeExchange(name string) string {
	if name == "" {
		return "the default exchange"
	}
	return "exchange " + name
}

func (e *env) moveReport(queue, exchange string, s kombu.ShovelStats, total int, err error) {
	if e.output == "json" {
		m := map[string]any{"queue": queue, "exchange": exchange, "moved": s.Moved, "requeued": s.Requeued,
			"republished": s.Republished, "possibly_duplicated": s.AckLost, "interrupted": errors.Is(err, errInterrupted)}
		if err != nil && !errors.Is(err, errInterrupted) {
			m["error"] = mask(err.Error(), e.url)
		}
		writeJSON(e.stdout, m)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "moved %d message(s) from queue %s to %s", s.Moved, queue, describeExchange(exchange))
	if s.Requeued > 0 {
		fmt.Fprintf(&b, "; %d returned to %s unmoved", s.Requeued, queue)
	}
	if s.AckLost > 0 {
		fmt.Fprintf(&b, "; %d may be at both ends (acknowledgement lost)", s.AckLost)
	}
	if errors.Is(err, errInterrupted) {
		b.WriteString("; interrupted: the rest stays in the queue")
	}
	fmt.Fprintln(e.stdout, b.String())
}

// progress draws the move's progress on stderr: a bar redrawn in place on
// a terminal, a line a second otherwise (logs, CI).
type progress struct {
	e     *env
	total int
	start time.Time
	mu    sync.Mutex
	last  time.Time
	moved uint64
	drawn bool
}

func (p *progress) update(s kombu.ShovelStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.moved = s.Moved
	now := time.Now()
	every := time.Second
	if p.e.stderrIsTTY {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.draw()
}

func (p *progress) draw() {
	rate := float64(p.moved) / max(time.Since(p.start).Seconds(), 0.001)
	line := fmt.Sprintf("moved %d", p.moved)
	if p.total > 0 {
		const width = 30
		done := min(int(p.moved)*width/p.total, width)
		line = fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", done), strings.Repeat(".", width-done), p.moved, p.total)
	}
	line += fmt.Sprintf("  %.0f msg/s", rate)
	if p.e.stderrIsTTY {
		fmt.Fprintf(p.e.stderr, "\r%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.e.stderr, line)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		p.draw()
		fmt.Fprintln(p.e.stderr)
	}
}
