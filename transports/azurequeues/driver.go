package azurequeues

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func init() { transport.Register("azurestoragequeues", Driver{}) }

// Driver opens azurestoragequeues:// connections.
type Driver struct{}

const (
	defaultVisibility   = 30 * time.Second
	defaultPollInterval = time.Second // Kombu's Transport.polling_interval
	maxMessageBytes     = 64 * 1024   // Azure's limit on a message's text
)

// ErrCredentials is wrapped by the error Open returns when the account key
// or SAS token is malformed or refused.
var ErrCredentials = errors.New("azurestoragequeues: unusable credentials")

// options are an azurestoragequeues:// URL's account, credential and
// Kombu transport options.
type options struct {
	serviceURL   string // https://account.queue.core.windows.net/ or http://127.0.0.1:10001/devstoreaccount1
	account      string
	credential   string // account key or SAS token
	prefix       string
	visibility   time.Duration
	pollInterval time.Duration
}

// masked is the URL with its credential masked, as Kombu's as_uri writes
// it.
func (o *options) masked() string { return "azurestoragequeues://**@" + o.serviceURL }

var optionNames = []string{"queue_name_prefix", "visibility_timeout", "polling_interval"}

// parseOptions reads Kombu's form, azurestoragequeues://<key or SAS>@<account URL>,
// and the short form azurestoragequeues://:<key>@<account> (Azure) or
// azurestoragequeues://:<key>@<host>:<port>/<account> (an emulator, over
// http).
func parseOptions(u *transport.URL) (*options, error) {
	o := &options{visibility: defaultVisibility, pollInterval: defaultPollInterval}
	bad := func(format string, args ...any) error {
		shown := "azurestoragequeues://**@" + u.Host
		if o.serviceURL != "" {
			shown = o.masked()
		}
		return &transport.URLError{URL: shown, Reason: fmt.Sprintf(format, args...)}
	}
	const want = "want azurestoragequeues://<account key or SAS token>@<account URL>, or azurestoragequeues://:<account key>@<account>"
	switch {
	case u.SubURL != "":
		return nil, bad("the azurestoragequeues transport takes no \"+\" suffix")
	case (u.Host == "http" || u.Host == "https") && strings.HasPrefix(u.Path, "/"):
		// Kombu's form: the credential is the user part, the rest a URL.
		o.serviceURL = u.Host + "://" + strings.TrimPrefix(u.Path, "/")
		o.credential = u.User
		if u.Password != "" {
			o.credential += ":" + u.Password
		}
		host, path, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(o.serviceURL, "https://"), "http://"), "/")
		if first, _, ok := strings.Cut(host, "."); ok && strings.Contains(host, ".queue.") {
			o.account = first
		} else {
			o.account, _, _ = strings.Cut(path, "/")
		}
	case u.Host != "":
		o.credential = u.Password
		if u.User != "" {
			return nil, bad("%s (the short form has no user: write \":<key>@\")", want)
		}
		host := u.Host
		if u.Port != 0 || net.ParseIP(host) != nil || host == "localhost" {
			// An emulator: the account is the path, as Azurite serves it.
			o.account = strings.Trim(u.Path, "/")
			o.serviceURL = "http://" + net.JoinHostPort(host, strconv.Itoa(u.Port)) + "/" + o.account
			if u.Port == 0 {
				o.serviceURL = "http://" + host + "/" + o.account
			}
		} else {
			o.account = host
			o.serviceURL = "https://" + host + ".queue.core.windows.net/"
		}
	default:
		return nil, bad("%s", want)
	}
	if o.account == "" {
		return nil, bad("no storage account in the URL: %s", want)
	}
	if o.credential == "" {
		return nil, bad("no account key or SAS token: %s", want)
	}
	if strings.EqualFold(o.credential, "DefaultAzureCredential") || strings.EqualFold(o.credential, "ManagedIdentityCredential") {
		return nil, fmt.Errorf("azurestoragequeues: %s: %w (kombu-go takes an account key or a SAS token)", o.credential, transport.ErrNotSupported)
	}
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		switch key {
		case "queue_name_prefix":
			o.prefix = val
		case "visibility_timeout", "polling_interval":
			s, err := strconv.ParseFloat(val, 64)
			lo := 1.0
			if key == "polling_interval" {
				lo = 0.001
			}
			if err != nil || s < lo || s > 3600 {
				return nil, bad("%s=%q: want seconds from %g to 3600", key, val, lo)
			}
			d := time.Duration(s * float64(time.Second))
			if key == "visibility_timeout" {
				o.visibility = d.Round(time.Second)
			} else {
				o.pollInterval = d
			}
		case "failover_strategy":
		default:
			return nil, bad("unknown option %q (the azurestoragequeues transport takes %s)", key, strings.Join(optionNames, ", "))
		}
	}
	return o, nil
}

// redactSAS hides a SAS token's signature in the errors of requests that
// got no answer: net/http's *url.Error quotes the whole request URL, and
// with a SAS token its query holds the signature, which would reach the
// transport's errors and logs. (Azure's own refusals, *azcore.ResponseError,
// show the URL without its query.)
type redactSAS struct{}

func (redactSAS) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return resp, err
}

// redactURL replaces the value of the URL's sig parameter with "**".
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<a request URL>"
	}
	q := u.Query()
	if !q.Has("sig") {
		return raw
	}
	q.Set("sig", "**")
	u.RawQuery = q.Encode()
	return u.String()
}

// Open makes the client and checks, within ctx, that the account answers
// and takes the credential.
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
	copts := &azqueue.ClientOptions{}
	copts.Retry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second}
	copts.PerRetryPolicies = append(copts.PerRetryPolicies, redactSAS{})
	var svc *azqueue.ServiceClient
	if strings.Contains(o.credential, "sig=") {
		sep := "?"
		if strings.Contains(o.serviceURL, "?") {
			sep = "&"
		}
		svc, err = azqueue.NewServiceClientWithNoCredential(o.serviceURL+sep+strings.TrimPrefix(o.credential, "?"), copts)
	} else {
		var cred *azqueue.SharedKeyCredential
		cred, err = azqueue.NewSharedKeyCredential(o.account, o.credential)
		if err != nil {
			return nil, fmt.Errorf("azurestoragequeues: %s: %w: the account key is not base64 (%d characters)", o.masked(), ErrCredentials, len(o.credential))
		}
		svc, err = azqueue.NewServiceClientWithSharedKeyCredential(o.serviceURL, cred, copts)
	}
	if err != nil {
		return nil, fmt.Errorf("azurestoragequeues: %s: %w", o.masked(), err)
	}
	s := newStore(svc, o, log)
	if err := s.ping(ctx); err != nil {
		return nil, err
	}
	s.start()
	return virtual.NewConn(s, virtual.Config{
		Name:         "azurestoragequeues",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	}), nil
}
