// Command kombu looks at and moves messages on any broker kombu-go speaks
// to: RabbitMQ, Redis, SQL databases, the filesystem, SQS, MongoDB, Google
// Cloud Pub/Sub and Azure Storage queues.
//
//	kombu publish  -k orders '{"id": 1}'         publish a message
//	kombu consume  --count 10 orders            take messages and print them
//	kombu tail     orders                       print messages as they arrive
//	kombu peek     orders                       look without taking
//	kombu move     orders.dlq shop              replay a dead-letter queue
//	kombu purge    orders                       empty a queue (asks first)
//	kombu queues                                names, depths, consumers
//	kombu declare  --proto shop.proto           declare a proto file's topology
//	kombu proto    ./proto                      write kombu/v1/options.proto
//
// The broker URL comes from --url or KOMBU_URL. Every verb has --help with
// an example; `kombu help exit-codes` lists the exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Exit codes, documented in exitCodesHelp.
const (
	exitOK          = 0
	exitFailure     = 1   // the broker refused or failed an operation
	exitUsage       = 2   // bad flags or arguments, a malformed URL, an unreadable file
	exitNotFound    = 3   // the queue or exchange does not exist
	exitAborted     = 4   // purge not confirmed
	exitEmpty       = 5   // consume/peek found no message (only with --fail-empty)
	exitInterrupted = 130 // stopped by Ctrl-C (SIGINT) or SIGTERM, after reporting progress
)

const exitCodesHelp = `Exit codes:
  0    success
  1    the broker refused or failed an operation (connection refused, access refused, ...)
  2    usage: an unknown verb or flag, a missing argument, a malformed URL,
       a body file that cannot be read, a .proto file that does not compile
  3    not found: the queue or exchange named does not exist
  4    aborted: purge was not confirmed
  5    empty: consume or peek with --fail-empty found no message
  130  interrupted (Ctrl-C or SIGTERM); what was done so far is reported first
`

// usageError marks an error as the user's input: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// errInterrupted ends a verb that a signal stopped, after it reported.
var errInterrupted = errors.New("interrupted")

// errAborted ends a purge that was not confirmed.
var errAborted = errors.New("aborted: not confirmed")

// errEmpty ends consume/peek --fail-empty that found nothing.
var errEmpty = errors.New("no message")

// verb is one subcommand.
type verb struct {
	name    string
	summary string
	usage   string // the arguments after the verb
	help    string // what it does, with an example
	run     func(e *env, args []string) error
	flags   func(fs *flag.FlagSet, e *env)
	noURL   bool // the verb talks to no broker
}

// env is what every verb shares: streams, the common flags, signals.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	ctx            context.Context // ends on SIGINT/SIGTERM
	url            string
	output         string // "text" or "json"
	timeout        time.Duration
	verbose        bool
	stdinIsTTY     bool
	stderrIsTTY    bool
}

func verbs() []*verb {
	return []*verb{publishVerb(), consumeVerb(), tailVerb(), peekVerb(), moveVerb(), purgeVerb(), queuesVerb(), declareVerb(), protoVerb()}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, ctx: ctx,
		stdinIsTTY: isTerminal(os.Stdin), stderrIsTTY: isTerminal(os.Stderr),
	}
	os.Exit(run(e, os.Args[1:]))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run executes one command line and returns its exit code.
func run(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		topUsage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "help" {
		if args[1] == "exit-codes" {
			fmt.Fprint(e.stdout, exitCodesHelp)
			return exitOK
		}
		args = []string{args[1], "--help"}
	}
	var v *verb
	for _, c := range verbs() {
		if c.name == args[0] {
			v = c
		}
	}
	if v == nil {
		fmt.Fprintf(e.stderr, "kombu: unknown verb %q\n\n", args[0])
		topUsage(e.stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("kombu "+v.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if !v.noURL {
		fs.StringVar(&e.url, "url", "", "broker URL (default: $KOMBU_URL)")
		fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "bound on connecting and on each broker operation")
	}
	fs.StringVar(&e.output, "output", "text", "output format: text or json (one JSON object per line, for scripts)")
	fs.BoolVar(&e.verbose, "v", false, "log the client's warnings and retries to stderr")
	if v.flags != nil {
		v.flags(fs, e)
	}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: kombu %s [flags] %s\n\n%s\n\nFlags:\n", v.name, v.usage, strings.TrimSpace(v.help))
		fs.PrintDefaults()
		fmt.Fprintf(out, "\n%s", exitCodesHelp)
	}
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		return exitUsage // flag printed the error and the usage
	}
	if e.output != "text" && e.output != "json" {
		fmt.Fprintf(e.stderr, "kombu %s: --output %q: want text or json\n", v.name, e.output)
		return exitUsage
	}
	if !v.noURL && e.url == "" {
		e.url = e.getenv("KOMBU_URL")
		if e.url == "" {
			fmt.Fprintf(e.stderr, "kombu %s: no broker URL: give --url or set KOMBU_URL\n", v.name)
			return exitUsage
		}
	}
	err = v.run(e, pos)
	code := exitCode(err)
	if err != nil && !errors.Is(err, errInterrupted) && !errors.Is(err, errEmpty) {
		fmt.Fprintf(e.stderr, "kombu %s: %s\n", v.name, mask(err.Error(), e.url))
	}
	return code
}

// parseInterleaved parses flags anywhere among the arguments (Go's flag
// stops at the first argument), so that `kombu peek orders --count 3`
// works. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.As(err, &ue), errors.Is(err, kombu.ErrInvalidURL), errors.Is(err, kombu.ErrUnknownScheme):
		return exitUsage
	case errors.Is(err, kombu.ErrNotFound):
		return exitNotFound
	case errors.Is(err, errAborted):
		return exitAborted
	case errors.Is(err, errEmpty):
		return exitEmpty
	}
	return exitFailure
}

func topUsage(w io.Writer) {
	fmt.Fprintf(w, "kombu: look at and move messages on any broker kombu-go speaks to.\n\nUsage: kombu <verb> [flags] [arguments]\n\nVerbs:\n")
	for _, v := range verbs() {
		fmt.Fprintf(w, "  %-8s %s\n", v.name, v.summary)
	}
	fmt.Fprintf(w, "\nThe broker URL comes from --url or $KOMBU_URL (schemes: %s).\n", strings.Join(schemes(), ", "))
	fmt.Fprintf(w, "Passwords in URLs are masked in everything kombu prints.\n")
	fmt.Fprintf(w, "Run `kombu <verb> --help` for a verb's flags and an example, `kombu help exit-codes` for exit codes.\n")
}

// schemes lists the URL schemes the command can dial.
func schemes() []string {
	var out []string
	for _, s := range transport.Schemes() {
		if s != "memory" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// mask removes the password of url (and of any URL-like text) from s.
func mask(s, url string) string {
	if url == "" {
		return s
	}
	u, err := transport.Parse(url)
	if err != nil {
		return s
	}
	if pw, ok := passwordOf(url); ok && pw != "" {
		s = strings.ReplaceAll(s, url, u.String())
		s = strings.ReplaceAll(s, ":"+pw+"@", ":****@")
	}
	return s
}

// passwordOf returns the password in a URL's user info, if any.
func passwordOf(raw string) (string, bool) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", false
	}
	rest := raw[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", false
	}
	userinfo := rest[:at]
	if slash := strings.Index(userinfo, "/"); slash >= 0 {
		return "", false
	}
	_, pw, ok := strings.Cut(userinfo, ":")
	return pw, ok
}

// logger is where the runtime's logs go: stderr with -v, nowhere otherwise
// (the command reports what matters itself).
func (e *env) logger() *slog.Logger {
	level := slog.LevelError + 1
	if e.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// maskedURL is the URL as it is printed: password masked.
func (e *env) maskedURL() string {
	u, err := transport.Parse(e.url)
	if err != nil {
		return "(malformed URL)"
	}
	return u.String()
}

// connectionName has no space: Redis refuses one in CLIENT SETNAME.
const connectionName = "kombu-cli"

// dial opens a runtime connection without recovery: a command reports a
// lost connection rather than waiting for it to come back.
func (e *env) dial(url string) (*kombu.Connection, error) {
	if err := checkScheme(url); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	return kombu.Dial(ctx, url, kombu.WithLogger(e.logger()), kombu.WithConnectTimeout(e.timeout),
		kombu.WithConnectionName(connectionName), kombu.WithoutRecovery())
}

// open opens a driver connection directly, for what the runtime does not
// offer: looking at a queue without taking (peek), listing queues, taking
// messages as bytes whatever their content type (consume).
func (e *env) open(url string) (transport.Conn, error) {
	if err := checkScheme(url); err != nil {
		return nil, err
	}
	u, err := transport.Parse(url)
	if err != nil {
		return nil, err
	}
	d, _ := transport.Lookup(u.Scheme)
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	tc, err := d.Open(ctx, u, transport.Config{Logger: e.logger(), ConnectTimeout: e.timeout, ConnectionName: connectionName,
		Unroutable: func(string, string, string) {}})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", u.String(), err)
	}
	return tc, nil
}

// checkScheme refuses memory:// (its broker lives in one process) and a
// scheme no transport registered, with the schemes that are.
func checkScheme(url string) error {
	u, err := transport.Parse(url)
	if err != nil {
		return err
	}
	if u.Scheme == "memory" {
		return usagef("memory:// is a broker inside one process: the command would see only its own, empty, broker; use a broker URL (%s)", strings.Join(schemes(), ", "))
	}
	if _, ok := transport.Lookup(u.Scheme); !ok {
		return fmt.Errorf("%w: %q (the command knows %s)", kombu.ErrUnknownScheme, u.Scheme, strings.Join(schemes(), ", "))
	}
	return nil
}

// opCtx bounds one broker operation by --timeout.
func (e *env) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.timeout)
}

// exchangeFor returns the exchange a verb publishes to. The command never
// declares an exchange on a broker that keeps exchanges itself (AMQP): it
// would need the exchange's every flag, and a misspelt name must fail, not
// create one. Kombu's virtual transports (Redis, SQL, the filesystem, ...)
// keep exchange types in each connection's memory instead, with only the
// bindings in the broker: there the type given with --exchange-type is
// declared on the command's connection so that it routes as the exchange's
// owners do (direct, without it).
func exchangeFor(url, name, typ string) (kombu.Exchange, error) {
	ex := kombu.Exchange{Name: name, NoDeclare: true}
	if typ == "" || name == "" {
		return ex, nil
	}
	switch kombu.ExchangeType(typ) {
	case kombu.ExchangeDirect, kombu.ExchangeTopic, kombu.ExchangeFanout, kombu.ExchangeHeaders:
	default:
		return ex, usagef("--exchange-type %q: want direct, topic, fanout or headers", typ)
	}
	u, err := transport.Parse(url)
	if err != nil {
		return ex, err
	}
	switch u.Scheme {
	case "amqp", "amqps", "pyamqp":
		return ex, nil // the broker knows the type
	}
	ex.Type, ex.NoDeclare = kombu.ExchangeType(typ), false
	return ex, nil
}

const exchangeTypeUsage = "the exchange's type (direct, topic, fanout, headers): needed on Redis, SQL, the filesystem and the other virtual transports, where each connection keeps exchange types itself (default: direct); ignored on AMQP, where the broker knows it"
