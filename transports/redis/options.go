package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

const (
	defaultPort         = 6379
	defaultSentinelPort = 26379

	defaultVisibilityTimeout = time.Hour // Kombu's visibility_timeout, 3600 s
	defaultMutexExpire       = 300 * time.Second
	defaultPollInterval      = time.Second            // with wake-ups from Redis
	fallbackPollInterval     = 100 * time.Millisecond // without them
	maxRestoreInterval       = 10 * time.Second       // Kombu's 10 s restore tick
)

// options is a parsed broker URL.
type options struct {
	network, addr string // "tcp" host:port, or "unix" path
	sentinels     []string
	cluster       []string // redis+cluster:// seed nodes; nil: not a cluster (cluster.go)
	sharded       bool     // redis+cluster:// in cluster_mode=sharded (cluster.go)
	masterName    string
	sentinelUser  string
	sentinelPass  string
	user, pass    string
	db            int
	tls           *tls.Config // nil: plain TCP
	poolSize      int         // 0: go-redis's default
	dialTimeout   time.Duration
	ioTimeout     time.Duration
	clientName    string

	keyprefix         string
	visibilityTimeout time.Duration
	pollInterval      time.Duration
	pollIntervalSet   bool
	restoreInterval   time.Duration
	restoreLimit      int
	mutexExpire       time.Duration
	unackedKey        string
	unackedIndexKey   string
	unackedMutexKey   string
	fanoutPrefix      string // before formatting {db}
	fanoutPrefixOff   bool
	fanoutPatterns    bool
	exactBindings     bool // check the binding set on every publish (publish.go)
}

// parseOptions reads a redis://, rediss://, redis+socket:// or sentinel://
// URL.
func parseOptions(u *transport.URL, cfg transport.Config) (*options, error) {
	o := &options{
		network:           "tcp",
		visibilityTimeout: defaultVisibilityTimeout,
		mutexExpire:       defaultMutexExpire,
		unackedKey:        "unacked",
		unackedIndexKey:   "unacked_index",
		unackedMutexKey:   "unacked_mutex",
		fanoutPrefix:      "/{db}.",
		fanoutPatterns:    true,
		dialTimeout:       cfg.ConnectTimeout,
		clientName:        cfg.ConnectionName,
		user:              u.User,
		pass:              u.Password,
	}
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	query := u.Query
	vhost, hasVhost := u.Path, u.HasPath
	switch {
	case u.SubURL != "" && u.Scheme == "redis" && strings.HasPrefix(u.SubURL, "cluster://"):
		c, err := parseClusterURL(u)
		if err != nil {
			return nil, err
		}
		o.cluster, o.user, o.pass, query = c.nodes, c.user, c.pass, c.query
		vhost, hasVhost = c.path, c.hasPath
		o.addr = o.cluster[0]
	case u.SubURL != "":
		if u.Scheme != "redis" || !strings.HasPrefix(u.SubURL, "socket://") {
			return nil, bad("only redis+socket:///path/to/redis.sock and redis+cluster://host1:port,host2:port are supported after '+'")
		}
		path, q, _ := strings.Cut(strings.TrimPrefix(u.SubURL, "socket://"), "?")
		if path == "" {
			return nil, bad("redis+socket:// needs the socket's path: redis+socket:///run/redis.sock")
		}
		parsed, err := transport.Parse("redis://?" + q)
		if err != nil {
			return nil, bad("query: %v", err)
		}
		query = parsed.Query
		o.network, o.addr = "unix", path
		vhost, hasVhost = "", false
		for _, k := range []string{"virtual_host", "db"} {
			if v := query.Get(k); v != "" {
				vhost, hasVhost = v, true
			}
			query.Del(k)
		}
	case u.Scheme == "sentinel":
		o.addr = u.HostPort("127.0.0.1", defaultSentinelPort)
		o.sentinels = []string{o.addr}
	default:
		o.addr = u.HostPort("127.0.0.1", defaultPort)
	}

	// The DB number, as Kombu's _prepare_virtual_host reads the vhost.
	if hasVhost {
		v := strings.TrimPrefix(vhost, "/")
		if v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, bad("the path is the database number, a non-negative integer, not %q", vhost)
			}
			o.db = n
		}
	}

	useTLS := u.Scheme == "rediss"
	tlsOpts := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(query)) {
		vals := query[key]
		val := ""
		if len(vals) > 0 {
			val = vals[len(vals)-1]
		}
		var err error
		switch key {
		case "visibility_timeout":
			o.visibilityTimeout, err = seconds(val, false)
		case "global_keyprefix":
			o.keyprefix = val
		case "polling_interval", "brpop_timeout":
			o.pollInterval, err = seconds(val, false)
			o.pollIntervalSet = true
		case "unacked_restore_interval":
			o.restoreInterval, err = seconds(val, false)
		case "unacked_restore_limit":
			o.restoreLimit, err = nonNegInt(val)
		case "unacked_mutex_expire":
			o.mutexExpire, err = seconds(val, false)
		case "unacked_key":
			o.unackedKey, err = nonEmpty(val)
		case "unacked_index_key":
			o.unackedIndexKey, err = nonEmpty(val)
		case "unacked_mutex_key":
			o.unackedMutexKey, err = nonEmpty(val)
		case "fanout_prefix":
			if b, berr := parseBool(val); berr == nil {
				o.fanoutPrefixOff = !b
			} else {
				o.fanoutPrefix = val
			}
		case "fanout_patterns":
			o.fanoutPatterns, err = parseBool(val)
		case "exact_bindings":
			o.exactBindings, err = parseBool(val)
		case "max_connections":
			o.poolSize, err = nonNegInt(val)
		case "socket_timeout":
			o.ioTimeout, err = seconds(val, true)
		case "socket_connect_timeout", "connect_timeout":
			if cfg.ConnectTimeout == 0 {
				o.dialTimeout, err = seconds(val, true)
			}
		case "client_name", "connection_name":
			if cfg.ConnectionName == "" {
				o.clientName = val
			}
		case "master_name":
			o.masterName = val
		case "sentinel":
			for _, v := range vals {
				for _, h := range strings.Split(v, ",") {
					if h = strings.TrimSpace(h); h != "" {
						o.sentinels = append(o.sentinels, hostPort(h, defaultSentinelPort))
					}
				}
			}
		case "sentinel_username":
			o.sentinelUser = val
		case "sentinel_password":
			o.sentinelPass = val
		case "ssl":
			useTLS, err = parseBool(val)
		case "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "insecure":
			tlsOpts[key] = val
		case "cluster_mode":
			// Checked with the other cluster options (checkCluster).
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			return nil, bad("unknown option %q (the redis transport takes visibility_timeout, global_keyprefix, polling_interval, "+
				"unacked_restore_interval, unacked_restore_limit, unacked_mutex_expire, unacked_key, unacked_index_key, unacked_mutex_key, "+
				"fanout_prefix, fanout_patterns, exact_bindings, max_connections, socket_timeout, socket_connect_timeout, client_name, "+
				"ssl, ssl_cert_reqs, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_check_hostname, insecure, "+
				"for sentinel:// master_name, sentinel, sentinel_username, sentinel_password, and for redis+cluster:// cluster_mode)", key)
		}
		if err != nil {
			return nil, bad("option %s=%q: %v", key, val, err)
		}
	}
	if o.visibilityTimeout <= 0 {
		return nil, bad("visibility_timeout must be positive")
	}
	if o.mutexExpire <= 0 {
		return nil, bad("unacked_mutex_expire must be positive")
	}
	if u.Scheme == "sentinel" {
		if o.masterName == "" {
			return nil, bad("sentinel:// needs master_name=<name of the monitored master>")
		}
	} else {
		for _, k := range []string{"master_name", "sentinel", "sentinel_username", "sentinel_password"} {
			if query.Has(k) {
				return nil, bad("option %s is for sentinel:// URLs", k)
			}
		}
	}
	if o.fanoutPrefixOff {
		o.fanoutPrefix = ""
	}
	if err := o.checkCluster(u, query); err != nil {
		return nil, err
	}
	o.fanoutPrefix = strings.ReplaceAll(o.fanoutPrefix, "{db}", strconv.Itoa(o.db))
	if o.restoreInterval == 0 {
		o.restoreInterval = min(maxRestoreInterval, max(o.visibilityTimeout/2, 100*time.Millisecond))
	}

	if useTLS {
		t, err := tlsConfig(cfg.TLS, tlsOpts)
		if err != nil {
			return nil, bad("%v", err)
		}
		o.tls = t
	} else if len(tlsOpts) > 0 {
		return nil, bad("TLS options (%s) on a URL without TLS: use rediss:// (or ssl=true)", strings.Join(slices.Sorted(maps.Keys(tlsOpts)), ", "))
	}
	o.clientName = clientName(o.clientName)
	return o, nil
}

// clientName makes a connection name one CLIENT SETNAME takes: Redis
// refuses a name with spaces, newlines or other characters outside '!'
// to '~' (and then every connection fails), while RabbitMQ shows any
// string, so a name given to kombu.WithConnectionName for every broker
// ("orders worker") has those characters replaced by '-'.
func clientName(name string) string {
	clean := func(r rune) bool { return r >= '!' && r <= '~' }
	if !strings.ContainsFunc(name, func(r rune) bool { return !clean(r) }) {
		return name
	}
	return strings.Map(func(r rune) rune {
		if clean(r) {
			return r
		}
		return '-'
	}, name)
}

// tlsConfig builds the TLS configuration: the runtime's if it gave one,
// else one that verifies the server against the system roots, then the
// URL's options. Unlike Kombu, which passes ssl_cert_reqs through and
// leaves verification to redis-py's defaults, verification is on unless the
// URL turns it off explicitly (insecure=true or ssl_cert_reqs=none).
//
// The server name to verify is the host the connection dials (the master
// that Sentinel names, for sentinel://) unless base sets one.
func tlsConfig(base *tls.Config, opts map[string]string) (*tls.Config, error) {
	var t *tls.Config
	if base != nil {
		t = base.Clone()
	} else {
		t = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if v, ok := opts["insecure"]; ok {
		b, err := parseBool(v)
		if err != nil {
			return nil, fmt.Errorf("option insecure=%q: %v", v, err)
		}
		t.InsecureSkipVerify = t.InsecureSkipVerify || b
	}
	if v, ok := opts["ssl_cert_reqs"]; ok {
		switch strings.ToLower(strings.TrimPrefix(strings.ToUpper(v), "CERT_")) {
		case "required", "optional":
		case "none":
			t.InsecureSkipVerify = true
		default:
			return nil, fmt.Errorf("option ssl_cert_reqs=%q: want required, optional or none (or CERT_REQUIRED, ...)", v)
		}
	}
	if path := opts["ssl_ca_certs"]; path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("option ssl_ca_certs: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("option ssl_ca_certs: no PEM certificate in %s", path)
		}
		t.RootCAs = pool
	}
	certFile, keyFile := opts["ssl_certfile"], opts["ssl_keyfile"]
	if certFile != "" || keyFile != "" {
		if certFile == "" {
			return nil, errors.New("option ssl_keyfile needs ssl_certfile")
		}
		if keyFile == "" {
			keyFile = certFile // a PEM file holding both, as Python's load_cert_chain allows
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("options ssl_certfile/ssl_keyfile: %v", err)
		}
		t.Certificates = append(t.Certificates, cert)
	}
	if v, ok := opts["ssl_check_hostname"]; ok {
		check, err := parseBool(v)
		if err != nil {
			return nil, fmt.Errorf("option ssl_check_hostname=%q: %v", v, err)
		}
		if !check && !t.InsecureSkipVerify {
			verifyChainOnly(t)
		}
	}
	return t, nil
}

// verifyChainOnly verifies the server's certificate chain but not its host
// name (ssl_check_hostname=false).
func verifyChainOnly(t *tls.Config) {
	roots := t.RootCAs
	t.InsecureSkipVerify = true
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("redis: the server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

func hostPort(h string, defPort int) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(defPort))
}

// seconds parses a number of seconds as Kombu's options take them.
func seconds(v string, allowZero bool) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f == 0 && !allowZero {
		return 0, errors.New("want a positive number of seconds")
	}
	return time.Duration(f * float64(time.Second)), nil
}

func nonNegInt(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative integer")
	}
	return n, nil
}

func nonEmpty(v string) (string, error) {
	if v == "" {
		return "", errors.New("must not be empty")
	}
	return v, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on", "y":
		return true, nil
	case "0", "false", "no", "off", "n":
		return false, nil
	}
	return false, errors.New("want true or false")
}
