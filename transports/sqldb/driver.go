package sqldb

import (
	"context"
	"io"
	"log/slog"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Schemes are the URL schemes the package registers: Kombu's (sqla+ and
// sqlalchemy+ before an SQLAlchemy URL) and the databases' own.
var Schemes = []string{"sqla", "sqlalchemy", "postgres", "postgresql", "mysql", "sqlite"}

func init() {
	for _, s := range Schemes {
		transport.Register(s, Driver{})
	}
}

// Driver opens connections to PostgreSQL, MySQL, MariaDB and SQLite.
type Driver struct{}

// Open parses the URL, connects, makes the tables that are missing and
// returns the connection.
func (Driver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := parseURL(u, cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	s, err := openStore(ctx, o, log)
	if err != nil {
		return nil, err
	}
	inner := virtual.NewConn(s, virtual.Config{
		Name:         "sqldb",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	})
	return newConn(s, inner), nil
}
