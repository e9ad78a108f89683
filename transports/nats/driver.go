package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func init() { transport.Register("nats", Driver{}) }

// Driver opens nats:// connections.
type Driver struct{}

// Defaults.
const (
	defaultPort          = 4222
	defaultStreamPrefix  = "KOMBU"
	defaultSubjectPrefix = "kombu"
	defaultAckWait       = 30 * time.Second
	defaultPollInterval  = 100 * time.Millisecond // a fallback: consumers are woken by publishes
	defaultDeadMaxAge    = 14 * 24 * time.Hour
)

// options are a nats:// URL's.
type options struct {
	server        string // nats://host:port, no credentials
	user          string
	password      string
	streamPrefix  string
	subjectPrefix string
	ackWait       time.Duration
	maxDeliver    int
	requeueDelay  time.Duration
	pollInterval  time.Duration
	storage       jetstream.StorageType
	replicas      int
	deadMaxAge    time.Duration
}

var optionNames = []string{
	"stream_prefix", "subject_prefix", "ack_wait", "max_deliver", "requeue_delay",
	"polling_interval", "storage", "replicas", "dead_letter_max_age",
}

func parseOptions(u *transport.URL) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if u.SubURL != "" {
		return nil, bad("the nats transport takes no \"+\" suffix")
	}
	if u.Path != "" {
		return nil, bad("a nats URL has no path (queues are streams named by stream_prefix)")
	}
	host := u.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := u.Port
	if port == 0 {
		port = defaultPort
	}
	o := &options{
		server:        "nats://" + net.JoinHostPort(host, strconv.Itoa(port)),
		user:          u.User,
		password:      u.Password,
		streamPrefix:  defaultStreamPrefix,
		subjectPrefix: defaultSubjectPrefix,
		ackWait:       defaultAckWait,
		pollInterval:  defaultPollInterval,
		storage:       jetstream.FileStorage,
		replicas:      1,
		deadMaxAge:    defaultDeadMaxAge,
	}
	seconds := func(key, val string, lo, hi float64) (time.Duration, error) {
		s, err := strconv.ParseFloat(val, 64)
		if err != nil || s < lo || s > hi {
			return 0, bad("%s=%q: want seconds from %g to %g", key, val, lo, hi)
		}
		return time.Duration(s * float64(time.Second)), nil
	}
	count := func(key, val string, lo, hi int) (int, error) {
		n, err := strconv.Atoi(val)
		if err != nil || n < lo || n > hi {
			return 0, bad("%s=%q: want a whole number from %d to %d", key, val, lo, hi)
		}
		return n, nil
	}
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		var err error
		switch key {
		case "stream_prefix":
			if !validPrefix(val, false) {
				return nil, bad("stream_prefix=%q: want letters, digits, '-' and '_'", val)
			}
			o.streamPrefix = val
		case "subject_prefix":
			if !validPrefix(val, true) {
				return nil, bad("subject_prefix=%q: want subject tokens of letters, digits, '-' and '_' between dots (no wildcards)", val)
			}
			o.subjectPrefix = val
		case "ack_wait":
			o.ackWait, err = seconds(key, val, 1, 12*3600)
		case "max_deliver":
			o.maxDeliver, err = count(key, val, 0, 1<<30)
		case "requeue_delay":
			o.requeueDelay, err = seconds(key, val, 0, 3600)
		case "polling_interval":
			o.pollInterval, err = seconds(key, val, 0.001, 3600)
		case "storage":
			switch val {
			case "file":
				o.storage = jetstream.FileStorage
			case "memory":
				o.storage = jetstream.MemoryStorage
			default:
				err = bad("storage=%q: want file or memory", val)
			}
		case "replicas":
			o.replicas, err = count(key, val, 1, 5)
		case "dead_letter_max_age":
			o.deadMaxAge, err = seconds(key, val, 1, 10*365*86400)
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			err = bad("unknown option %q (the nats transport takes %s)", key, strings.Join(optionNames, ", "))
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// ErrNoJetStream is wrapped by the error Open returns when the server
// answers but has JetStream disabled (start it with -js).
var ErrNoJetStream = errors.New("nats: JetStream is not enabled on the server")

// Open connects, within ctx, and checks that JetStream answers (its
// account info), so that an unreachable server, refused credentials or a
// server without JetStream fail here with an error saying which.
func (Driver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := parseOptions(u)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	where := strings.TrimPrefix(o.server, "nats://")
	nopts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Errors of the connection's own (a slow wake-up subscription)
		// are logged, not printed.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			log.Debug("nats: asynchronous error", "error", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected; reconnecting", "server", where, "error", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats: reconnected", "server", where) }),
	}
	if cfg.ConnectionName != "" {
		nopts = append(nopts, nats.Name(cfg.ConnectionName))
	}
	if o.user != "" || o.password != "" {
		nopts = append(nopts, nats.UserInfo(o.user, o.password))
	}
	if cfg.TLS != nil {
		nopts = append(nopts, nats.Secure(cfg.TLS))
	}
	timeout := cfg.ConnectTimeout
	if d, ok := ctx.Deadline(); ok && (timeout == 0 || time.Until(d) < timeout) {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if timeout > 0 {
		nopts = append(nopts, nats.Timeout(timeout))
	}
	// nats.Connect takes no context: it runs beside a wait on ctx, and a
	// connection made after ctx ended is closed.
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(o.server, nopts...)
		ch <- result{nc, err}
	}()
	var nc *nats.Conn
	select {
	case r := <-ch:
		if r.err != nil {
			if errors.Is(r.err, nats.ErrAuthorization) {
				return nil, fmt.Errorf("nats: connect to %s: %w: %v", where, transport.ErrAccessRefused, r.err)
			}
			return nil, fmt.Errorf("nats: connect to %s: %w", where, r.err)
		}
		nc = r.nc
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("nats: connect to %s: %w", where, ctx.Err())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("nats: %s: %w: %v", where, ErrNoJetStream, err)
		}
		return nil, fmt.Errorf("nats: %s: JetStream account info: %w", where, err)
	}
	s := newStore(nc, js, o, log)
	if err := s.start(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return virtual.NewConn(s, virtual.Config{
		Name:         "nats",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	}), nil
}
