package filesystem

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func init() { transport.Register("filesystem", Driver{}) }

// Driver opens filesystem:// connections.
type Driver struct{}

// options are a filesystem:// URL's folders and settings.
type options struct {
	in, out, processed, control string
	storeProcessed              bool
	pollInterval                time.Duration
}

// optionNames are the query options a filesystem:// URL takes.
var optionNames = []string{"data_folder_in", "data_folder_out", "processed_folder", "store_processed", "control_folder", "polling_interval"}

// parseOptions reads a filesystem:// URL: Kombu's transport options as
// query parameters, and the folder shorthand (see the package
// documentation).
func parseOptions(u *transport.URL) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case u.SubURL != "":
		return nil, bad("the filesystem transport takes no \"+\" suffix")
	case u.Host != "" || u.Port != 0 || u.User != "" || u.Password != "":
		return nil, bad("a filesystem URL names no host: write filesystem:///path/to/folder, or filesystem:// with data_folder_in and data_folder_out")
	}
	// Kombu's defaults, relative to the working directory.
	o := &options{in: "data_in", out: "data_out", processed: "processed", control: "control"}
	if u.Path != "" {
		// One folder for everything: filesystem:///var/spool/kombu.
		folder := "/" + u.Path
		o.in, o.out = folder, folder
		o.processed = filepath.Join(folder, "processed")
		o.control = filepath.Join(folder, "control")
	}
	for _, key := range slices.Sorted(maps.Keys(u.Query)) {
		val := u.Query.Get(key)
		switch key {
		case "data_folder_in":
			o.in = val
		case "data_folder_out":
			o.out = val
		case "processed_folder":
			o.processed = val
		case "control_folder":
			o.control = val
		case "store_processed":
			b, err := parseBool(val)
			if err != nil {
				return nil, bad("store_processed=%q: %v", val, err)
			}
			o.storeProcessed = b
		case "polling_interval":
			secs, err := strconv.ParseFloat(val, 64)
			if err != nil || secs <= 0 || secs > 3600 {
				return nil, bad("polling_interval=%q: want seconds, more than 0 and at most 3600", val)
			}
			o.pollInterval = time.Duration(secs * float64(time.Second))
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			return nil, bad("unknown option %q (the filesystem transport takes %s)", key, strings.Join(optionNames, ", "))
		}
	}
	for _, f := range []*string{&o.in, &o.out, &o.processed, &o.control} {
		if *f == "" {
			return nil, bad("a folder option is empty")
		}
		abs, err := filepath.Abs(*f)
		if err != nil {
			return nil, bad("folder %q: %v", *f, err)
		}
		*f = abs
	}
	return o, nil
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

// Open checks the URL's folders, takes a folder of its own for the
// messages it will take, restores those left taken by connections that are
// gone, and returns the connection.
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
	s, err := openStore(o, log)
	if err != nil {
		return nil, err
	}
	return virtual.NewConn(s, virtual.Config{
		Name:         "filesystem",
		Logger:       log,
		PollInterval: o.pollInterval,
		Unroutable:   cfg.Unroutable,
	}), nil
}
