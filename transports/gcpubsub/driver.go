package gcpubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/pubsub/v2"
	vkit "cloud.google.com/go/pubsub/v2/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func init() { transport.Register("gcpubsub", Driver{}) }

// Driver opens gcpubsub:// connections.
type Driver struct{}

// Kombu's defaults (kombu/transport/gcpubsub.py).
// reconnectMaxDelay bounds gRPC's wait between attempts to reconnect.
const reconnectMaxDelay = 2 * time.Second

const (
	defaultPrefix          = "kombu-"
	defaultAckDeadline     = 240 * time.Second
	defaultExpiration      = 86400 * time.Second
	fanoutRetention        = 600 * time.Second
	defaultPollInterval    = 100 * time.Millisecond // Kombu's Transport.polling_interval
	defaultAckModifyBatch  = 1000
	minAckDeadline         = 10 * time.Second
	maxAckDeadline         = 600 * time.Second
	maxMessageBytes        = 10_000_000 // Pub/Sub's limit on a message (data and attributes)
	defaultEmulatorEnvName = "PUBSUB_EMULATOR_HOST"
)

// options are a gcpubsub:// URL's project and Kombu transport options.
type options struct {
	project        string
	prefix         string
	ackDeadline    time.Duration
	expiration     time.Duration
	exactlyOnce    bool
	ackModifyBatch int
	pollInterval   time.Duration
	emulatorHost   string
}

// optionNames are the query options a gcpubsub:// URL takes: Kombu's
// transport options, and emulator_host.
var optionNames = []string{
	"queue_name_prefix", "ack_deadline_seconds", "expiration_seconds", "enable_exactly_once_delivery",
	"ack_modify_batch_size", "polling_interval", "wait_time_seconds", "retry_timeout_seconds",
	"bulk_max_messages", "emulator_host",
}

// parseOptions reads gcpubsub://projects/<project>?option=value.
func parseOptions(u *transport.URL) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case u.SubURL != "":
		return nil, bad("the gcpubsub transport takes no \"+\" suffix")
	case u.User != "" || u.Password != "":
		return nil, bad("a gcpubsub URL carries no credentials: they come from Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS)")
	case u.Host != "projects" || u.Port != 0:
		return nil, bad("want gcpubsub://projects/<project-id>")
	}
	o := &options{
		project:        strings.Trim(u.Path, "/"),
		prefix:         defaultPrefix,
		ackDeadline:    defaultAckDeadline,
		expiration:     defaultExpiration,
		ackModifyBatch: defaultAckModifyBatch,
		pollInterval:   defaultPollInterval,
		emulatorHost:   os.Getenv(defaultEmulatorEnvName),
	}
	if o.project == "" || strings.Contains(o.project, "/") {
		return nil, bad("want gcpubsub://projects/<project-id>, with one project id")
	}
	seconds := func(key, val string, lo, hi float64) (time.Duration, error) {
		s, err := strconv.ParseFloat(val, 64)
		if err != nil || s < lo || s > hi {
			return 0, bad("%s=%q: want seconds from %g to %g", key, val, lo, hi)
		}
		return time.Duration(s * float64(time.Second)), nil
	}
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		var err error
		switch key {
		case "queue_name_prefix":
			o.prefix = val
		case "ack_deadline_seconds":
			o.ackDeadline, err = seconds(key, val, minAckDeadline.Seconds(), maxAckDeadline.Seconds())
		case "expiration_seconds":
			o.expiration, err = seconds(key, val, 86400, 365*86400)
		case "enable_exactly_once_delivery":
			o.exactlyOnce, err = strconv.ParseBool(val)
			if err != nil {
				err = bad("%s=%q: not a boolean", key, val)
			}
		case "ack_modify_batch_size":
			n, perr := strconv.Atoi(val)
			if perr != nil || n < 1 {
				err = bad("%s=%q: want a positive count", key, val)
			}
			o.ackModifyBatch = n
		case "polling_interval":
			o.pollInterval, err = seconds(key, val, 0.001, 3600)
		case "emulator_host":
			o.emulatorHost = val
		case "wait_time_seconds", "retry_timeout_seconds", "bulk_max_messages":
			// Kombu's knobs for its own pulling threads: a Take here is
			// one immediate pull of one message, and calls are bounded by
			// the caller's context.
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			err = bad("unknown option %q (the gcpubsub transport takes %s)", key, strings.Join(optionNames, ", "))
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// ErrCredentials is wrapped by the error Open returns when no Google
// credentials are found, the credentials file is missing or malformed, or
// the token service or Pub/Sub refuses them.
var ErrCredentials = errors.New("gcpubsub: no usable Google credentials")

// googleCredentials finds Application Default Credentials, as the client
// would, and gets a token with them within ctx: a missing or malformed
// credentials file, or a key the token service refuses, then fails Open
// with ErrCredentials naming the problem, where the client would only
// fail its first call, with an untyped error. The error carries the
// library's description (a path, a JSON syntax error, the token service's
// status), never the file's contents.
func googleCredentials(ctx context.Context, project string) (*auth.Credentials, error) {
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: vkit.DefaultAuthScopes()})
	if err != nil {
		return nil, fmt.Errorf("gcpubsub: project %s: %w: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, the metadata server): %v", project, ErrCredentials, err)
	}
	if _, err := creds.Token(ctx); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("gcpubsub: project %s: getting a token: %w", project, ctxErr)
		}
		var ae *auth.Error
		if errors.As(err, &ae) && ae.Response != nil && ae.Response.StatusCode < 500 {
			// The token service answered and refused the credentials.
			return nil, fmt.Errorf("gcpubsub: project %s: %w: %w: getting a token: %v", project, ErrCredentials, transport.ErrAccessRefused, err)
		}
		// A key the library cannot use, or a token service that cannot
		// be reached.
		return nil, fmt.Errorf("gcpubsub: project %s: %w: getting a token: %v", project, ErrCredentials, err)
	}
	return creds, nil
}

// Open makes the Pub/Sub clients and checks that the service answers
// within ctx (listing one topic of the project), so that a wrong project,
// refused credentials or an endpoint that does not answer fail here.
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
	// gRPC waits up to two minutes between attempts to reconnect a
	// connection that failed; a service that is back would then go unused
	// (and a publish fail its context) long after it answers again. Two
	// seconds between attempts at most is cheap for one client.
	copts := []option.ClientOption{option.WithGRPCDialOption(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
		MinConnectTimeout: 5 * time.Second,
	}))}
	if o.emulatorHost != "" {
		copts = append(copts, option.WithEndpoint(o.emulatorHost), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	} else {
		creds, err := googleCredentials(ctx, o.project)
		if err != nil {
			return nil, err
		}
		copts = append(copts, option.WithAuthCredentials(creds))
	}
	client, err := pubsub.NewClient(ctx, o.project, copts...)
	if err != nil {
		if strings.Contains(err.Error(), "credentials") {
			return nil, fmt.Errorf("gcpubsub: project %s: %w: %v", o.project, ErrCredentials, err)
		}
		return nil, fmt.Errorf("gcpubsub: project %s: %w", o.project, err)
	}
	s := newStore(client, o, log)
	if err := s.ping(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	s.start()
	inner := virtual.NewConn(s, virtual.Config{
		Name:         "gcpubsub",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	})
	return newConn(inner, s), nil
}
