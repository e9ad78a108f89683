// Package amqp is kombu-go's RabbitMQ transport, built on
// github.com/rabbitmq/amqp091-go. It registers the "amqp" and "amqps"
// schemes, and "pyamqp" as Kombu does, and speaks AMQP 0-9-1 with the
// properties and headers Kombu's py-amqp transport uses, so Python Kombu and
// Celery read what it publishes and the other way round.
//
// Import it for its side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/amqp"
//
// # URLs
//
// The URL takes Kombu's form, transport://user:password@host:port/vhost:
// "amqp://h//" and "amqp://h" name the vhost "/", "amqp://h/foo" names "foo"
// and "amqp://h//foo" names "/foo". User and password default to
// guest/guest, the host to localhost and the port to 5672, or 5671 for
// amqps:// and ssl=true. Query options, in Kombu's spelling or amqp091-go's:
//
//	heartbeat=30                     seconds (default 10); 0 takes the broker's interval
//	connect_timeout=5                seconds, for TCP, TLS and the AMQP handshake
//	connection_timeout=5000          the same in milliseconds (amqp091-go's spelling)
//	connection_name=orders           shown by rabbitmqctl list_connections and the management UI
//	channel_max=100                  cap on the number of channels
//	login_method=AMQPLAIN            PLAIN (default), AMQPLAIN or EXTERNAL; also auth_mechanism
//	ssl=true                         TLS on an amqp:// URL
//	ssl_ca_certs=/ca.pem             CA bundle verifying the broker; also cacertfile
//	ssl_certfile=/c.pem              client certificate; also certfile
//	ssl_keyfile=/k.pem               its key; also keyfile
//	ssl_server_hostname=rabbit       name checked in the broker's certificate; also server_name_indication
//	ssl_cert_reqs=none               required (default) or none; also CERT_REQUIRED, CERT_NONE
//	ssl_check_hostname=false         verify the chain but not the host name
//	insecure=true                    skip certificate verification altogether
//	failover_strategy=round-robin    read by the runtime for ";"-separated lists; ignored here
//	native_delayed_delivery_queue_type=classic   quorum (default, as Celery's) or classic: the delay queues' type
//	native_delayed_delivery_prefix=app           names the delay topology app_celery_delayed_… (Kombu main's prefix)
//
// Any other key is an error wrapping transport.ErrInvalidURL, as Kombu raises
// for unknown keys. Options given through transport.Config (heartbeat,
// connect timeout, TLS configuration, connection name) win over the URL's.
// amqps:// verifies the broker's certificate and host name against the
// system roots unless told otherwise.
//
// # Channels
//
// Each connection keeps one long-lived publisher channel in confirm mode,
// a second publisher channel without confirms (opened on first use) for
// messages published with Confirm unset, one channel for declarations,
// bindings, purges and deletions, one for basic.get and its
// acknowledgements, and one channel per subscription. A channel the broker
// closes (PRECONDITION_FAILED on a redeclaration, NOT_FOUND on a passive
// declaration or a publish to a missing exchange) is replaced for the next
// call. A lost connection is not reconnected: every call then fails with an
// error wrapping transport.ErrClosed, Done is closed and Err says why.
//
// Direct reply-to is the one case where publishing and consuming share a
// channel: RabbitMQ only accepts a request whose reply_to is
// amq.rabbitmq.reply-to on the channel consuming amq.rabbitmq.reply-to, so
// Publish sends such requests on the newest running subscription to it, and
// fails without one.
//
// # Clusters
//
// A connection is to one node. kombu.Dial takes the nodes of a cluster as a
// ";"-separated list of URLs, connects to the first that answers and, after
// a loss, to the next: publishes whose confirm the loss took are made again
// there, and consumers resume. Quorum queues (x-queue-type=quorum) survive
// a node's loss; streams (x-queue-type=stream) are read from the offset a
// consumer names in its x-stream-offset argument, with a prefetch. The
// tests in cluster_test.go, and chaos/'s tests 17–17c, run on the
// three-node cluster of scripts/rabbitmq-cluster.sh.
//
// # Tables
//
// Arguments and headers are converted once, on the way out: every Go integer
// type becomes a 64-bit AMQP long (RabbitMQ compares integer arguments by
// value, whatever their width), time.Duration becomes integer milliseconds,
// float32 becomes float64, slices become field arrays and maps with string
// keys nested tables. Received headers keep the types amqp091-go decodes,
// so an integer arrives as int32 or int64 as its sender encoded it (kombu-go
// always sends int64); nested tables arrive as map[string]any.
//
// # Publishing
//
// Confirmed publishes wait for the broker's publisher confirm.
// Mandatory publishes always go through the confirm channel and always wait
// for the confirm, Confirm set or not, because that is the only way to know
// that no basic.return is coming; a returned message fails with an error
// wrapping transport.ErrUnroutable. Returns carry no confirm sequence number,
// so they are matched to their publish by message id: a mandatory message
// without a MessageID is given a unique one, which its consumers see as the
// message_id property. Mandatory messages that carry the same MessageID are
// never unconfirmed at once on a connection: the second waits for the
// first's confirm (a batch goes in parts), so neither can claim the other's
// return.
//
// # Differences from py-amqp on the wire
//
// amqp091-go omits a property whose value is the zero value, so a priority
// of 0 and empty headers are not sent (py-amqp sends priority 0 and an empty
// table). Kombu reads both cases the same way.
package amqp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

func init() {
	for _, scheme := range []string{"amqp", "amqps", "pyamqp"} {
		transport.Register(scheme, Driver{})
	}
}

// Driver opens connections to RabbitMQ (or another AMQP 0-9-1 broker).
type Driver struct{}

// Defaults, as Kombu and amqp091-go have them.
const (
	defaultHeartbeat = 10 * time.Second
	// defaultConnectTimeout bounds connecting when neither the URL, the
	// Config nor the context does, so that a broker that accepts TCP but
	// never answers cannot hang Open forever (amqp091-go's own default).
	defaultConnectTimeout = 30 * time.Second
	defaultPort           = 5672
	defaultTLSPort        = 5671
)

// options is what Open takes from the URL and the Config.
type options struct {
	addr           string
	vhost          string
	user, password string
	heartbeat      time.Duration
	connectTimeout time.Duration
	connectionName string
	channelMax     uint16
	authMechanism  string
	tls            *tls.Config // nil: plain TCP
	delay          delayOptions
}

// Open connects to the broker described by u.
func (Driver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts, err := parseOptions(u, cfg)
	if err != nil {
		return nil, err
	}
	if opts.tls != nil && opts.tls.InsecureSkipVerify && opts.tls.VerifyConnection == nil && cfg.Logger != nil {
		// The opt-out is explicit, and it must be loud: anyone on the path
		// can now read and change every message.
		cfg.Logger.Warn("amqp: TLS certificate verification is OFF for this connection", "url", u.String())
	}
	ac, err := dial(ctx, opts)
	if err != nil {
		return nil, describeDialError("connect to "+u.String(), err)
	}
	c := newConn(ac, u.String(), cfg)
	c.delay.opts = opts.delay
	return c, nil
}

// parseOptions reads u's options, with cfg's taking precedence.
func parseOptions(u *transport.URL, cfg transport.Config) (*options, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if u.SubURL != "" {
		return nil, bad("the amqp transport takes no \"+\" suffix")
	}
	o := &options{
		vhost:     "/",
		user:      "guest",
		password:  "guest",
		heartbeat: defaultHeartbeat,
		delay:     defaultDelayOptions(),
	}
	if u.HasPath && u.Path != "" {
		o.vhost = u.Path
	}
	if u.User != "" {
		o.user = u.User
	}
	if u.Password != "" {
		o.password = u.Password
	}

	useTLS := u.Scheme == "amqps"
	var (
		caFile, certFile, keyFile, serverName string
		insecure, skipHostname                bool
	)
	seconds := func(key, v string) (time.Duration, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1e9 {
			return 0, bad("option %s=%q: want a number of seconds", key, v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	boolean := func(key, v string) (bool, error) {
		switch strings.ToLower(v) {
		case "1", "true", "yes", "on":
			return true, nil
		case "0", "false", "no", "off", "":
			return false, nil
		}
		return false, bad("option %s=%q: want true or false", key, v)
	}
	for key, vals := range u.Query {
		v := ""
		if len(vals) > 0 {
			v = vals[len(vals)-1]
		}
		var err error
		switch key {
		case "heartbeat":
			o.heartbeat, err = seconds(key, v)
		case "connect_timeout":
			o.connectTimeout, err = seconds(key, v)
		case "connection_timeout": // amqp091-go: milliseconds
			n, perr := strconv.ParseUint(v, 10, 32)
			if perr != nil {
				err = bad("option %s=%q: want a number of milliseconds", key, v)
			}
			o.connectTimeout = time.Duration(n) * time.Millisecond
		case "connection_name":
			o.connectionName = v
		case "channel_max":
			n, perr := strconv.ParseUint(v, 10, 16)
			if perr != nil {
				err = bad("option %s=%q: want a number from 0 to 65535", key, v)
			}
			o.channelMax = uint16(n)
		case "login_method", "auth_mechanism":
			switch m := strings.ToUpper(v); m {
			case "PLAIN", "AMQPLAIN", "EXTERNAL":
				o.authMechanism = m
			default:
				err = bad("option %s=%q: want PLAIN, AMQPLAIN or EXTERNAL", key, v)
			}
		case "ssl":
			var on bool
			if on, err = boolean(key, v); on {
				useTLS = true
			}
		case "ssl_ca_certs", "cacertfile":
			caFile = v
		case "ssl_certfile", "certfile":
			certFile = v
		case "ssl_keyfile", "keyfile":
			keyFile = v
		case "ssl_server_hostname", "server_name_indication":
			serverName = v
		case "ssl_cert_reqs":
			switch strings.ToLower(v) {
			case "required", "cert_required", "optional", "cert_optional":
				// A client always gets a certificate from the server, so
				// "optional" verifies it as "required" does.
			case "none", "cert_none":
				insecure = true
			default:
				err = bad("option %s=%q: want required or none", key, v)
			}
		case "ssl_check_hostname":
			var check bool
			check, err = boolean(key, v)
			skipHostname = !check
		case "insecure":
			insecure, err = boolean(key, v)
		case "failover_strategy":
			// The runtime's business: it walks ";"-separated lists.
		default:
			if ok, derr := o.delay.parse(key, v); !ok {
				err = bad("unknown option %q for the amqp transport", key)
			} else if derr != nil {
				err = bad("%v", derr)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, bad("ssl_certfile and ssl_keyfile go together")
	}

	port := defaultPort
	if useTLS {
		port = defaultTLSPort
	}
	o.addr = u.HostPort("localhost", port)

	if cfg.Heartbeat > 0 {
		o.heartbeat = cfg.Heartbeat
	}
	if cfg.ConnectTimeout > 0 {
		o.connectTimeout = cfg.ConnectTimeout
	}
	if cfg.ConnectionName != "" {
		o.connectionName = cfg.ConnectionName
	}

	if useTLS {
		if cfg.TLS != nil {
			o.tls = cfg.TLS.Clone()
		} else {
			t := &tls.Config{MinVersion: tls.VersionTLS12}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return nil, bad("ssl_ca_certs: %v", err)
				}
				t.RootCAs = x509.NewCertPool()
				if !t.RootCAs.AppendCertsFromPEM(pem) {
					return nil, bad("ssl_ca_certs %q holds no PEM certificate", caFile)
				}
			}
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return nil, bad("ssl_certfile/ssl_keyfile: %v", err)
				}
				t.Certificates = []tls.Certificate{cert}
			}
			t.ServerName = serverName
			switch {
			case insecure:
				t.InsecureSkipVerify = true
			case skipHostname:
				t.InsecureSkipVerify = true // replaced by the chain check below
				t.VerifyConnection = verifyChainOnly(t.RootCAs)
			}
			o.tls = t
		}
		if o.tls.ServerName == "" {
			if serverName != "" {
				o.tls.ServerName = serverName
			} else {
				host := u.Host
				if host == "" {
					host = "localhost"
				}
				o.tls.ServerName = host
			}
		}
	}
	return o, nil
}

// verifyChainOnly checks the broker's certificate chain against roots (the
// system's when nil) without matching the host name, for
// ssl_check_hostname=false.
func verifyChainOnly(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("amqp: the broker sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// dial opens the TCP (and TLS) connection and runs the AMQP handshake,
// bounded by ctx and the connect timeout.
func dial(ctx context.Context, o *options) (*amqp.Connection, error) {
	timeout := o.connectTimeout
	if _, ok := ctx.Deadline(); !ok && timeout == 0 {
		timeout = defaultConnectTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	if o.tls != nil {
		tc := tls.Client(nc, o.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	// The AMQP handshake has no context: bound it with a deadline on the
	// socket (amqp091-go clears it once the connection is open), and cut it
	// short if ctx ends first.
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })

	props := amqp.NewConnectionProperties()
	if o.connectionName != "" {
		props.SetClientConnectionName(o.connectionName)
	}
	cfg := amqp.Config{
		Vhost:      o.vhost,
		Heartbeat:  o.heartbeat,
		ChannelMax: o.channelMax,
		Properties: props,
		Locale:     "en_US",
	}
	switch o.authMechanism {
	case "AMQPLAIN":
		cfg.SASL = []amqp.Authentication{&amqp.AMQPlainAuth{Username: o.user, Password: o.password}}
	case "EXTERNAL":
		cfg.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
	default:
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: o.user, Password: o.password}}
	}
	ac, err := amqp.Open(nc, cfg)
	if !stop() {
		// ctx ended while the handshake ran: the deadline may have been
		// set after amqp091-go cleared it, so the connection is not usable.
		if err == nil {
			ac.Close()
		}
		nc.Close()
		return nil, context.Cause(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ac, nil
}

// describeDialError makes a handshake failure readable. It never includes
// the password: amqp091-go's errors do not, and the URL is masked by the
// caller.
func describeDialError(op string, err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		e := &brokerError{op: op, err: ae}
		switch {
		case ae == amqp.ErrCredentials || ae.Code == amqp.AccessRefused:
			e.hint = "check the user name and password"
			e.kind = transport.ErrAccessRefused // retrying will not help
		case ae == amqp.ErrVhost || ae.Code == amqp.NotAllowed:
			e.hint = "check the virtual host and the user's permissions on it"
			e.kind = transport.ErrAccessRefused
		}
		return e
	}
	return fmt.Errorf("amqp: %s: %w", op, err)
}
