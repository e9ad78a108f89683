package kombu_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// secret is a password no test output may contain.
const secret = "Pw-7f3a9c1e-do-not-log"

// logBuffer is a slog handler's destination that tests can read while the
// connection still writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noSecret fails the test if s holds the password, in clear or
// percent-encoded.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if strings.Contains(s, form) {
			t.Errorf("%s contains the password:\n%s", what, s)
			return
		}
	}
}

func TestPasswordNeverInLogsErrorsOrURLOnMemory(t *testing.T) {
	logs := &logBuffer{}
	ctx := ctxT(t)
	raw := "memory://guest:" + secret + "@localhost/" + strings.ReplaceAll(t.Name(), "/", "_")
	conn, err := kombu.Dial(ctx, raw, kombu.WithLogger(debugLogger(logs)))
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "URL()", conn.URL())
	if !strings.Contains(conn.URL(), "guest:**@") {
		t.Errorf("URL() = %s, want the password masked as ** (as Kombu's as_uri)", conn.URL())
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("nowhere"))
	if err := p.Publish(ctx, map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	// An operation that fails with an OperationalError carries the URL.
	_, err = kombu.Queue{Name: "missing-" + t.Name()}.Inspect(ctx, conn)
	if err == nil {
		t.Fatal("inspecting a missing queue succeeded")
	}
	noSecret(t, "inspect error", fmt.Sprintf("%v %+v %#v", err, err, err))
	var op *kombu.OperationalError
	if errors.As(err, &op) {
		noSecret(t, "OperationalError.URL", op.URL)
	}
	conn.Close()

	// Bad URLs: the errors quote them with the password masked.
	for _, bad := range []string{
		"amqp://guest:" + secret + "@host:99999//",
		"amqp://guest:" + secret + "@ho st//",
		"amqp://guest:" + secret + "@host/vhost@x",
		"amqp://guest:" + url.PathEscape(secret) + "%zz@host//",
		"amqp://guest:" + secret + "@host//#frag",
		"nosuch://guest:" + secret + "@host//",
		"amqp://guest:" + secret + "@host//?password=" + secret,
		"amqp://guest:" + secret + "@[::1//",
		"memory://guest:" + secret + "@x;;memory://",
	} {
		// Some of these parse and then fail to connect: bound the retries.
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kombu.Dial(dctx, bad, kombu.WithLogger(debugLogger(logs)))
		cancel()
		if err == nil {
			t.Errorf("Dial(%q) succeeded", bad)
			continue
		}
		noSecret(t, "error for a bad URL", err.Error())
	}
	noSecret(t, "logs", logs.String())
	if !strings.Contains(logs.String(), "guest:**@") {
		t.Logf("logs:\n%s", logs.String())
	}
}

func TestPasswordNeverInLogsOrErrorsOnAMQP(t *testing.T) {
	good := brokertest.AMQPURL(t)
	u, err := url.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	// Dial may retry a failed connection until its context ends: each
	// failing dial gets a short one.
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	// The right user with a wrong password: the broker refuses the login.
	wrong := *u
	wrong.User = url.UserPassword(u.User.Username(), secret)
	_, err = kombu.Dial(short(), wrong.String(), kombu.WithLogger(debugLogger(logs)), kombu.WithConnectTimeout(5*time.Second))
	if err == nil {
		t.Fatal("dial with a wrong password succeeded")
	}
	noSecret(t, "auth failure", fmt.Sprintf("%v %+v", err, err))

	// Nothing listening there.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err = kombu.Dial(short(), "amqp://guest:"+secret+"@"+addr+"//", kombu.WithLogger(debugLogger(logs)),
		kombu.WithConnectTimeout(2*time.Second))
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	noSecret(t, "unreachable", fmt.Sprintf("%v %+v", err, err))

	// A failover list with the good URL last: the failure before it is
	// logged; then publish on the good connection.
	ctx := ctxT(t)
	conn, err := kombu.Dial(ctx, "amqp://guest:"+secret+"@"+addr+"//;"+good,
		kombu.WithLogger(debugLogger(logs)), kombu.WithConnectTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	noSecret(t, "URL()", conn.URL())
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("kombu-go.credentials-test.nowhere"))
	if err := p.Publish(ctx, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	// A failing broker operation: its error names the (masked) URL.
	_, err = kombu.Queue{Name: "kombu-go.credentials-test.missing"}.Inspect(ctx, conn)
	if err == nil {
		t.Fatal("inspecting a missing queue succeeded")
	}
	noSecret(t, "inspect error", err.Error())

	noSecret(t, "logs", logs.String())
	if !strings.Contains(logs.String(), "connect failed") {
		t.Errorf("the failed attempts were not logged (so the test proves little):\n%s", logs.String())
	}
}

// TestAMQPSVerifiesTLSByDefault dials amqps:// to a server with a
// self-signed certificate: without a TLS config that trusts it, the
// handshake must fail, never fall back to an unverified connection.
func TestAMQPSVerifiesTLSByDefault(t *testing.T) {
	cert := selfSigned(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	handshakes := make(chan error, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handshakes <- c.(*tls.Conn).Handshake()
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	logs := &logBuffer{}
	_, err = kombu.Dial(ctx, "amqps://guest:"+secret+"@"+l.Addr().String()+"//",
		kombu.WithLogger(debugLogger(logs)), kombu.WithConnectTimeout(5*time.Second))
	if err == nil {
		t.Fatal("amqps:// connected to a server with an untrusted certificate")
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) && !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a certificate verification failure", err)
	}
	select {
	case herr := <-handshakes:
		if herr == nil {
			t.Fatal("the server saw a completed handshake")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no TLS handshake reached the server")
	}
	noSecret(t, "TLS error", err.Error())
	noSecret(t, "logs", logs.String())
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
