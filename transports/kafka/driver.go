package kafka

import (
	"context"
	"crypto/tls"
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

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Kombu registers the transport as confluentkafka; kafka is the alias
// Celery users write.
func init() {
	transport.Register("confluentkafka", Driver{})
	transport.Register("kafka", Driver{})
}

// Driver opens confluentkafka:// and kafka:// connections.
type Driver struct{}

// Kombu's defaults (kombu/transport/confluentkafka.py), and Kafka's.
const (
	defaultPort            = 9092 // Kombu's DEFAULT_PORT
	defaultConnectWait     = 5 * time.Second
	defaultWaitTime        = 5 * time.Second
	defaultPollInterval    = time.Second // consumers are woken by arrivals; this is the fallback look
	defaultNumPartitions   = 1
	defaultReplication     = 1
	defaultMaxRecordBytes  = 1_000_000 // below Kafka's default message.max.bytes (1048588), with room for the batch header
	defaultBufferedRecords = 512       // records fetched ahead of consumers, per queue
	// A partition's settled offsets are committed at most this often, or
	// sooner once this many records were settled since the last commit:
	// a commit per ack costs a round trip (and the broker's work) per
	// message. What a crash can deliver again is bounded by both.
	defaultCommitInterval = 100 * time.Millisecond
	defaultCommitEvery    = 1000
	groupSuffix           = "-consumer-group"
	// DLQSuffix is appended to a queue's topic to name the topic that
	// keeps the records rejected without requeue from it (see the
	// package doc).
	DLQSuffix = ".dlq"
)

// ErrBrokersUnavailable is wrapped by the error Open returns when no
// broker of the list answered in time (Kombu's NoBrokersAvailable).
var ErrBrokersUnavailable = errors.New("kafka: no broker available")

// options are a URL's brokers and Kombu's transport options.
type options struct {
	seeds          []string
	user, password string
	connectWait    time.Duration
	waitTime       time.Duration
	pollInterval   time.Duration
	securityProto  string
	saslMechanism  string
	numPartitions  int32
	replication    int16
	maxRecordBytes int
	buffered       int
	commitInterval time.Duration
	commitEvery    int
}

// optionNames are the query options a kafka URL takes.
var optionNames = []string{
	"brokers", "connection_wait_time_seconds", "wait_time_seconds", "polling_interval",
	"security_protocol", "sasl_mechanism", "num_partitions", "replication_factor",
	"max_record_bytes", "fetch_buffer", "commit_interval", "commit_every",
}

// parseOptions reads confluentkafka://[user:password@]host[:port][?brokers=h2:9092,h3:9092&...].
// Kombu connects to the URL's host alone; brokers adds seeds, so that
// any one of a cluster's brokers answering is enough.
func parseOptions(u *transport.URL) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case u.SubURL != "":
		return nil, bad("the kafka transport takes no \"+\" suffix")
	case u.Path != "":
		return nil, bad("a kafka URL has no path (topics are the queues' names)")
	}
	o := &options{
		user:           u.User,
		password:       u.Password,
		connectWait:    defaultConnectWait,
		waitTime:       defaultWaitTime,
		pollInterval:   defaultPollInterval,
		securityProto:  "plaintext",
		numPartitions:  defaultNumPartitions,
		replication:    defaultReplication,
		maxRecordBytes: defaultMaxRecordBytes,
		buffered:       defaultBufferedRecords,
		commitInterval: defaultCommitInterval,
		commitEvery:    defaultCommitEvery,
	}
	o.seeds = append(o.seeds, u.HostPort("localhost", defaultPort))
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
		var n int
		switch key {
		case "brokers":
			for _, hp := range strings.Split(val, ",") {
				hp = strings.TrimSpace(hp)
				if hp == "" {
					continue
				}
				if _, _, serr := net.SplitHostPort(hp); serr != nil {
					hp = net.JoinHostPort(hp, strconv.Itoa(defaultPort))
				}
				o.seeds = append(o.seeds, hp)
			}
		case "connection_wait_time_seconds":
			o.connectWait, err = seconds(key, val, 0.001, 3600)
		case "wait_time_seconds":
			o.waitTime, err = seconds(key, val, 0, 3600)
		case "polling_interval":
			o.pollInterval, err = seconds(key, val, 0.001, 3600)
		case "security_protocol":
			o.securityProto = strings.ToLower(val)
			switch o.securityProto {
			case "plaintext", "ssl", "sasl_plaintext", "sasl_ssl":
			default:
				err = bad("%s=%q: want plaintext, ssl, sasl_plaintext or sasl_ssl", key, val)
			}
		case "sasl_mechanism":
			o.saslMechanism = strings.ToUpper(val)
			switch o.saslMechanism {
			case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			default:
				err = bad("%s=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", key, val)
			}
		case "num_partitions":
			n, err = count(key, val, 1, 100000)
			o.numPartitions = int32(n)
		case "replication_factor":
			n, err = count(key, val, 1, 32767)
			o.replication = int16(n)
		case "max_record_bytes":
			o.maxRecordBytes, err = count(key, val, 1024, 1<<30)
		case "fetch_buffer":
			o.buffered, err = count(key, val, 1, 1<<20)
		case "commit_interval":
			o.commitInterval, err = seconds(key, val, 0, 3600)
		case "commit_every":
			o.commitEvery, err = count(key, val, 1, 1<<30)
		case "topic_config", "kafka_common_config", "kafka_producer_config", "kafka_consumer_config", "kafka_admin_config":
			err = bad("%s: librdkafka's configuration dictionaries do not apply to this Go client", key)
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			err = bad("unknown option %q (the kafka transport takes %s)", key, strings.Join(optionNames, ", "))
		}
		if err != nil {
			return nil, err
		}
	}
	if strings.HasPrefix(o.securityProto, "sasl") {
		if o.saslMechanism == "" {
			return nil, bad("security_protocol=%s needs sasl_mechanism", o.securityProto)
		}
		if o.user == "" {
			return nil, bad("security_protocol=%s needs a user and password in the URL", o.securityProto)
		}
	}
	return o, nil
}

// clientOpts are the options every client of a connection shares: seeds,
// TLS and SASL as the URL says.
func (o *options) clientOpts(cfg transport.Config) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(o.seeds...)}
	if cfg.ConnectionName != "" {
		opts = append(opts, kgo.ClientID(cfg.ConnectionName))
	}
	if o.securityProto == "ssl" || o.securityProto == "sasl_ssl" {
		tc := cfg.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch o.saslMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: o.user, Pass: o.password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.user, Pass: o.password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.user, Pass: o.password}.AsSha512Mechanism()))
	}
	return opts
}

// Open makes the producing client and checks, within ctx and
// connection_wait_time_seconds, that a broker of the list answers (Kombu
// lists the topics for the same reason), so that an unreachable list
// fails here with ErrBrokersUnavailable.
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
	s, err := newStore(o, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	wait := o.connectWait
	if cfg.ConnectTimeout > 0 {
		wait = cfg.ConnectTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	err = s.ping(pctx)
	cancel()
	if err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kafka: brokers %s: %w", strings.Join(o.seeds, ","), ctx.Err())
		}
		return nil, fmt.Errorf("kafka: brokers %s did not answer within %v: %w: %v", strings.Join(o.seeds, ","), wait, ErrBrokersUnavailable, err)
	}
	inner := virtual.NewConn(s, virtual.Config{
		Name:         "kafka",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	})
	return &conn{Conn: inner, s: s}, nil
}
