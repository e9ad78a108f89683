package mongodb

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func init() { transport.Register("mongodb", Driver{}) }

// Driver opens mongodb:// connections.
type Driver struct{}

// Kombu's defaults (kombu/transport/mongodb.py).
const (
	defaultDatabase    = "kombu_default"
	messagesCollection = "messages"
	routingCollection  = "messages.routing"
	defaultLease       = 60 * time.Second
)

// options are a mongodb:// URL's settings that are kombu-go's, with the
// rest passed to the driver as MongoDB's connection string options.
type settings struct {
	uri          string // for the driver, without kombu's options
	masked       string // uri with the password masked
	database     string
	lease        time.Duration
	pollInterval time.Duration
}

func parseOptions(u *transport.URL) (*settings, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if u.SubURL != "" {
		return nil, bad("the mongodb transport takes no \"+\" suffix")
	}
	o := &settings{database: defaultDatabase, lease: defaultLease}
	if u.Path != "" {
		if strings.ContainsAny(u.Path, "/\\. \"$") {
			return nil, bad("database name %q: MongoDB refuses /, \\, ., space, \" and $ in it", u.Path)
		}
		o.database = u.Path
	}
	q := url.Values{}
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		switch key {
		case "visibility_timeout":
			secs, err := strconv.ParseFloat(val, 64)
			if err != nil || secs < 1 || secs > 86400 {
				return nil, bad("visibility_timeout=%q: want seconds from 1 to 86400", val)
			}
			o.lease = time.Duration(secs * float64(time.Second))
		case "polling_interval":
			secs, err := strconv.ParseFloat(val, 64)
			if err != nil || secs <= 0 || secs > 3600 {
				return nil, bad("polling_interval=%q: want seconds, more than 0 and at most 3600", val)
			}
			o.pollInterval = time.Duration(secs * float64(time.Second))
		case "failover_strategy":
		default:
			q[key] = u.Query[key]
		}
	}
	host := u.HostPort("127.0.0.1", 27017)
	build := func(password string) string {
		v := url.URL{Scheme: "mongodb", Host: host, Path: "/" + o.database, RawQuery: q.Encode()}
		if u.User != "" {
			if password != "" {
				v.User = url.UserPassword(u.User, password)
			} else {
				v.User = url.User(u.User)
			}
		}
		return v.String()
	}
	o.uri = build(u.Password)
	o.masked = strings.ReplaceAll(build(map[bool]string{true: "xxxx", false: ""}[u.Password != ""]), ":xxxx@", ":****@")
	return o, nil
}

// Open connects to MongoDB, pings it (so that a server that does not
// answer or refuses the credentials fails here, bounded by ctx), and makes
// Kombu's indexes.
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
	copts := options.Client().ApplyURI(o.uri)
	if err := copts.Validate(); err != nil {
		return nil, &transport.URLError{URL: u.String(), Reason: mask(err.Error(), u.Password)}
	}
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect to %s: %s", o.masked, mask(err.Error(), u.Password))
	}
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, wrapErr(fmt.Sprintf("connect to %s", o.masked), err, u.Password)
	}
	s, err := newStore(ctx, client, o, log, u.Password)
	if err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return virtual.NewConn(s, virtual.Config{
		Name:         "mongodb",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	}), nil
}
