package sqs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func init() { transport.Register("sqs", Driver{}) }

// Driver opens sqs:// connections.
type Driver struct{}

// Kombu's defaults (kombu/transport/SQS.py).
const (
	defaultRegion     = "us-east-1"
	defaultVisibility = 1800 // seconds
	// MaxMessageSize is the largest message body, after base64, that SQS
	// takes by default (256 KiB). A larger envelope is refused before it is
	// sent, with an error matching ErrLimitExceeded.
	MaxMessageSize = 256 * 1024
)

// options are an sqs:// URL's settings.
type options struct {
	accessKey, secretKey string
	endpoint             string // "" for AWS's own
	region               string
	prefix               string
	visibility           int32 // seconds
	pollInterval         time.Duration
	base64               bool
	maxMessageSize       int
	// goaws: the endpoint is goaws, whose ApproximateNumberOfMessages
	// counts messages in flight too and whose DeleteMessage answers a
	// receipt it no longer knows with the code QueueExists.
	goaws bool
}

// optionNames are the query options an sqs:// URL takes.
var optionNames = []string{"region", "queue_name_prefix", "visibility_timeout", "polling_interval", "wait_time_seconds", "sqs-base64-encoding", "is_secure", "max_message_size", "emulator"}

// parseOptions reads an sqs:// URL (see the package documentation).
func parseOptions(u *transport.URL) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if u.SubURL != "" {
		return nil, bad("the sqs transport takes no \"+\" suffix")
	}
	if (u.User == "") != (u.Password == "") {
		return nil, bad("give both the access key id and the secret access key (sqs://KEY_ID:SECRET@), or neither to use the AWS environment's credentials")
	}
	o := &options{accessKey: u.User, secretKey: u.Password, visibility: defaultVisibility, base64: true, maxMessageSize: MaxMessageSize}
	secure := false
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		switch key {
		case "region":
			o.region = val
		case "queue_name_prefix":
			o.prefix = val
		case "visibility_timeout":
			n, err := strconv.ParseFloat(val, 64)
			if err != nil || n < 0 || n > 43200 {
				return nil, bad("visibility_timeout=%q: want seconds from 0 to 43200 (12 hours, SQS's limit)", val)
			}
			o.visibility = int32(n)
		case "polling_interval":
			secs, err := strconv.ParseFloat(val, 64)
			if err != nil || secs <= 0 || secs > 3600 {
				return nil, bad("polling_interval=%q: want seconds, more than 0 and at most 3600", val)
			}
			o.pollInterval = time.Duration(secs * float64(time.Second))
		case "wait_time_seconds":
			// Kombu's long-poll time; kombu-go's consumers poll instead
			// (see the package documentation). Checked, so that a URL
			// shared with Python is valid for both.
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > 20 {
				return nil, bad("wait_time_seconds=%q: want 0 to 20", val)
			}
		case "sqs-base64-encoding":
			b, err := parseBool(val)
			if err != nil {
				return nil, bad("sqs-base64-encoding=%q: %v", val, err)
			}
			o.base64 = b
		case "is_secure":
			b, err := parseBool(val)
			if err != nil {
				return nil, bad("is_secure=%q: %v", val, err)
			}
			secure = b
		case "max_message_size":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1024 {
				return nil, bad("max_message_size=%q: want bytes, at least 1024", val)
			}
			o.maxMessageSize = n
		case "emulator":
			if val != "goaws" {
				return nil, bad("emulator=%q: the only emulator with quirks to mend is goaws", val)
			}
			o.goaws = true
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			return nil, bad("unknown option %q (the sqs transport takes %s)", key, strings.Join(optionNames, ", "))
		}
	}
	if u.Host != "" {
		// Kombu's endpoint_url: the URL's host names the endpoint, over
		// HTTP unless is_secure.
		scheme := "http"
		if secure {
			scheme = "https"
		}
		o.endpoint = scheme + "://" + u.HostPort(u.Host, 0)
		if u.Port == 0 {
			o.endpoint = scheme + "://" + hostLiteral(u.Host)
		}
	}
	return o, nil
}

// hostLiteral brackets an IPv6 address.
func hostLiteral(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on", "y":
		return true, nil
	case "0", "false", "no", "off", "n":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// Open makes the SQS client. It sends no request: the first declaration,
// publish or take is the first (as in Kombu), and refused credentials fail
// it with an error matching transport.ErrAccessRefused.
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
	awsCfg, err := loadConfig(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("sqs: AWS configuration: %w", err)
	}
	client := sqs.NewFromConfig(awsCfg, func(so *sqs.Options) {
		if o.endpoint != "" {
			so.BaseEndpoint = aws.String(o.endpoint)
		}
		so.HTTPClient = WholeBodies(so.HTTPClient)
	})
	s := newStore(client, o, endpointKey(o, awsCfg.Region), log)
	return virtual.NewConn(s, virtual.Config{
		Name:         "sqs",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	}), nil
}

// loadConfig is the URL's credentials, or the AWS environment's (variables,
// shared files, the instance's role) as boto3 finds them for Kombu.
func loadConfig(ctx context.Context, o *options) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if o.region != "" {
		opts = append(opts, config.WithRegion(o.region))
	}
	if o.accessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.accessKey, o.secretKey, "")))
	}
	c, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return c, err
	}
	if c.Region == "" {
		c.Region = defaultRegion
	}
	return c, nil
}

// endpointKey names the SQS a connection talks to, for the binding tables
// its process shares.
func endpointKey(o *options, region string) string {
	return o.endpoint + "|" + region + "|" + o.prefix
}
