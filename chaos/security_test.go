package chaos

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Tests 14 and 15 of reliability.md §6: bombs and oversize bodies, untrusted
// content types, TLS verification, credentials in logs.

const maxBody = 16 << 20

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// zlibBomb is a valid zlib stream of 1 GiB of zeros (about 1 MB): the
// deflate blocks of 1 MiB of zeros, flushed to a byte boundary, repeated
// 1024 times (their back-references only ever reach zeros), then the final
// block and the Adler-32 of 1 GiB of zeros. Building it takes milliseconds.
func zlibBomb(t *testing.T) []byte {
	var fb bytes.Buffer
	fw, err := flate.NewWriter(&fb, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(make([]byte, 1<<20))
	_ = fw.Flush()
	chunk := bytes.Clone(fb.Bytes())
	fb.Reset()
	_ = fw.Close()
	tail := bytes.Clone(fb.Bytes())
	out := []byte{0x78, 0xda} // zlib header: deflate, 32 KiB window, best compression
	for range 1024 {
		out = append(out, chunk...)
	}
	out = append(out, tail...)
	const n = 1 << 30
	return binary.BigEndian.AppendUint32(out, uint32(n%65521)<<16|1) // Adler-32: b<<16 | a
}

// zstdBomb is a zstd stream of 1 GiB of zeros (about 32 KB), written as a
// stream, so its frame does not declare the size.
func zstdBomb(t *testing.T) []byte {
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(w, zeros{}, 1<<30); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.Bytes()
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return -1
}

// resetPeakRSS resets VmHWM (Linux: "5" to /proc/self/clear_refs).
func resetPeakRSS() bool { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil }

// decodeFailures collects what a consumer's decode-error handler saw.
type decodeFailures struct {
	mu   sync.Mutex
	errs map[string]error
	at   map[string]time.Time
}

func (f *decodeFailures) hook(msg *kombu.Message, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs, f.at = map[string]error{}, map[string]time.Time{}
	}
	f.errs[idOf(msg)] = err
	f.at[idOf(msg)] = time.Now()
}

// get returns when the message's decode failure was seen, and the error.
func (f *decodeFailures) get(id string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at[id], f.errs[id]
}

func (f *decodeFailures) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errs)
}

// deadLettered drains the dead-letter queue and returns the ids found. It
// records them in led as consumed by "dlq": a message refused and
// dead-lettered is where it should be, not lost.
func deadLettered(ctx context.Context, t *testing.T, led *Ledger, adm *kombu.Connection, dlq string) []string {
	t.Helper()
	var ids []string
	for {
		m, err := (kombu.Queue{Name: dlq}).Get(ctx, adm, kombu.WithAutoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			return ids
		}
		if err != nil && m == nil {
			t.Fatalf("get from %s: %v", dlq, err)
		}
		ids = append(ids, idOf(m))
		led.Delivered("dlq", idOf(m), m.Redelivered())
	}
}

// 14. Decompression bombs: 1 GiB of zeros in ~1 MB of zlib and ~32 KB of
// zstd, sent one after the other to a consumer bounded by
// WithMaxBodySize(16 MiB); the peak RSS is measured for each.
func TestSecurity14DecompressionBombs(t *testing.T) {
	row := figure(t, "14", "decompression bombs: zlib (1 MB → 1 GiB) and zstd (32 KB → 1 GiB), consumer WithMaxBodySize(16 MiB)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	dlx, dlq := poisonSetup(t, ctx, adm, direct)
	q := kombu.Queue{Name: qname, DeadLetterExchange: dlx.Name}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	bombs := []struct {
		name, header string
		data         []byte
	}{{"zlib", "application/x-gzip", zlibBomb(t)}, {"zstd", "application/zstd", zstdBomb(t)}}
	led := NewLedger("t14")
	leaks := leakCheck(t)
	sink := &logSink{}
	cons := dial(t, direct, uniq(t, "consumer"), sink, kombu.WithMaxBodySize(maxBody))
	var fails decodeFailures
	var handled atomic.Int64
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		led.Delivered("consumer", idOf(msg), msg.Redelivered())
		handled.Add(1)
		return nil
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithDecodeErrorHandler(fails.hook), kombu.WithPrefetch(1))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	p := kombu.NewProducer(adm, kombu.WithRoutingKey(qname))
	for _, bomb := range bombs {
		debug.FreeOSMemory() // so that each bomb's peak is measured from a low RSS
		rss0 := procStatus("VmRSS")
		peakReset := resetPeakRSS()
		id, _, err := led.Publish(ctx, 10*time.Second, func(ctx context.Context, id string) error {
			return p.Publish(ctx, bomb.data, kombu.WithContentType("application/json", "utf-8"),
				kombu.WithHeaders(map[string]any{idHeader: id, "compression": bomb.header}))
		})
		if err != nil {
			t.Fatalf("publish the %s bomb: %v", bomb.name, err)
		}
		sent := time.Now()
		if !eventually(20*time.Second, func() bool { _, e := fails.get(id); return e != nil || handled.Load() > 0 }) {
			t.Errorf("%s bomb: neither refused nor handled within 20 s", bomb.name)
			continue
		}
		peak := procStatus("VmHWM")
		if !peakReset {
			peak = procStatus("VmRSS")
		}
		growth := peak - rss0
		at, ferr := fails.get(id)
		took := at.Sub(sent)
		t.Logf("%s bomb (%d bytes): refused after %v with %v; RSS %d MiB, peak %d MiB (+%d MiB)",
			bomb.name, len(bomb.data), took.Round(time.Millisecond), ferr, rss0>>20, peak>>20, growth>>20)
		row.Note("%s bomb (%d KB): refused %v after its publish, peak RSS +%d MiB", bomb.name, len(bomb.data)>>10, took.Round(time.Millisecond), growth>>20)
		if !errors.Is(ferr, kombu.ErrLimitExceeded) {
			t.Errorf("%s bomb refused with %v, want ErrLimitExceeded", bomb.name, ferr)
		}
		if took > time.Second {
			t.Errorf("%s bomb refused %v after its publish, want < 1 s", bomb.name, took.Round(time.Millisecond))
		}
		if growth > 64<<20 { // reliability.md §6, test 14
			t.Errorf("%s bomb: RSS grew by %d MiB while refusing it, want < 64 MiB", bomb.name, growth>>20)
		}
	}
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := handled.Load(); n > 0 {
		t.Errorf("%d bombs reached the handler", n)
	}
	// Rejected for good, not requeued: each is dead-lettered once.
	time.Sleep(300 * time.Millisecond)
	dead := deadLettered(ctx, t, led, adm, dlq)
	if len(dead) != len(bombs) {
		t.Errorf("dead-lettered %v, want each bomb once", dead)
	}
	if d := depth(ctx, t, adm, qname); d != 0 {
		t.Errorf("%d bombs back in the queue", d)
	}
	r := led.Check()
	row.Result = &r
	cons.Close()
	adm.Close()
	leaks()
}

// 14b. A 20 MiB body, not compressed, sent to a consumer bounded by
// WithMaxBodySize(16 MiB).
func TestSecurity14bOversizeBodyConsumed(t *testing.T) {
	row := figure(t, "14b", "20 MiB uncompressed body to a consumer WithMaxBodySize(16 MiB)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	dlx, dlq := poisonSetup(t, ctx, adm, direct)
	q := kombu.Queue{Name: qname, DeadLetterExchange: dlx.Name}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	led := NewLedger("t14b")
	big := bytes.Repeat([]byte{'x'}, 20<<20)
	if _, _, err := led.Publish(ctx, 20*time.Second, func(ctx context.Context, id string) error {
		return kombu.NewProducer(adm, kombu.WithRoutingKey(qname)).Publish(ctx, big, kombu.WithHeaders(map[string]any{idHeader: id}))
	}); err != nil {
		t.Fatalf("publish 20 MiB (no publish cap on this connection): %v", err)
	}
	sink := &logSink{}
	cons := dial(t, direct, uniq(t, "consumer"), sink, kombu.WithMaxBodySize(maxBody))
	var fails decodeFailures
	var size atomic.Int64
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		led.Delivered("consumer", idOf(msg), msg.Redelivered())
		size.Store(int64(len(msg.Body)))
		return nil
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithDecodeErrorHandler(fails.hook), kombu.WithPrefetch(1))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	eventually(10*time.Second, func() bool { return fails.count() > 0 || size.Load() > 0 })
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	r := led.Check()
	row.Result = &r
	if n := size.Load(); n > 0 {
		row.Note("the handler received the %d MiB body", n>>20)
		t.Errorf("a %d MiB body reached the handler of a consumer bounded by WithMaxBodySize(%d MiB): the limit applies to decompressed bodies only",
			n>>20, maxBody>>20)
	}
	_, err = fails.get("t14b-000001")
	if err == nil || !errors.Is(err, kombu.ErrLimitExceeded) {
		t.Errorf("decode-error handler got %v, want ErrLimitExceeded", err)
	} else {
		row.Note("refused: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if dead := deadLettered(ctx, t, led, adm, dlq); len(dead) != 1 && size.Load() == 0 {
		t.Errorf("dead-lettered %v, want the oversize message once", dead)
	}
}

// 14c. A producer bounded by WithMaxBodySize(16 MiB) asked to publish
// 20 MiB: refused before sending.
func TestSecurity14cOversizeBodyPublished(t *testing.T) {
	row := figure(t, "14c", "publish a 20 MiB body on a connection WithMaxBodySize(16 MiB)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := queueOf("classic", qname).Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	led := NewLedger("t14c")
	prod := dial(t, direct, uniq(t, "producer"), nil, kombu.WithMaxBodySize(maxBody))
	big := bytes.Repeat([]byte{'x'}, 20<<20)
	_, _, err := led.Publish(ctx, 20*time.Second, func(ctx context.Context, id string) error {
		return kombu.NewProducer(prod, kombu.WithRoutingKey(qname)).Publish(ctx, big, kombu.WithHeaders(map[string]any{idHeader: id}))
	})
	r := led.Check()
	row.Result = &r
	time.Sleep(200 * time.Millisecond)
	sent := depth(ctx, t, adm, qname)
	row.Note("Publish returned %v; messages in the queue afterwards: %d", err, sent)
	for range sent {
		if m, gerr := (kombu.Queue{Name: qname}).Get(ctx, adm, kombu.WithAutoAck()); gerr == nil {
			led.Delivered("queue", idOf(m), m.Redelivered())
		}
	}
	r = led.Check()
	if !errors.Is(err, kombu.ErrLimitExceeded) {
		t.Errorf("publishing 20 MiB on a connection WithMaxBodySize(16 MiB) returned %v, want ErrLimitExceeded before sending", err)
	}
	if sent != 0 {
		t.Errorf("the oversize body was sent to the broker (%d in the queue)", sent)
	}
}

// 15a. Untrusted content types (pickle, YAML) reach a consumer with the
// default accept list.
func TestSecurity15aUntrustedContentTypes(t *testing.T) {
	row := figure(t, "15a", "application/x-python-serialize and application/x-yaml to a consumer with the default accept list", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	dlx, dlq := poisonSetup(t, ctx, adm, direct)
	q := kombu.Queue{Name: qname, DeadLetterExchange: dlx.Name}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	leaks := leakCheck(t)
	led := NewLedger("t15a")
	payloads := []struct{ ct, body string }{
		{"application/x-python-serialize", "cos\nsystem\n(S'touch /tmp/kombu-chaos-pwned'\ntR."}, // pickle: os.system(...)
		{"application/x-yaml", "!!python/object/apply:os.system ['touch /tmp/kombu-chaos-pwned']\n"},
	}
	p := kombu.NewProducer(adm, kombu.WithRoutingKey(qname))
	for _, pl := range payloads {
		if _, _, err := led.Publish(ctx, 10*time.Second, func(ctx context.Context, id string) error {
			return p.Publish(ctx, pl.body, kombu.WithContentType(pl.ct, "binary"), kombu.WithHeaders(map[string]any{idHeader: id}))
		}); err != nil {
			t.Fatal(err)
		}
	}
	sink := &logSink{}
	cons := dial(t, direct, uniq(t, "consumer"), sink)
	var fails decodeFailures
	var handled atomic.Int64
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		led.Delivered("consumer", idOf(msg), msg.Redelivered())
		handled.Add(1)
		var v any
		return msg.Decode(&v)
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithDecodeErrorHandler(fails.hook))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	eventually(10*time.Second, func() bool { return fails.count()+int(handled.Load()) >= len(payloads) })
	time.Sleep(500 * time.Millisecond)
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := handled.Load(); n > 0 {
		t.Errorf("%d untrusted messages reached the handler", n)
	}
	for i, pl := range payloads {
		id := fmt.Sprintf("t15a-%06d", i+1)
		_, err := fails.get(id)
		if !errors.Is(err, kombu.ErrContentDisallowed) {
			t.Errorf("%s: decode-error handler got %v, want ErrContentDisallowed", pl.ct, err)
		} else {
			row.Note("%s refused: %v", pl.ct, err)
		}
	}
	if _, err := os.Stat("/tmp/kombu-chaos-pwned"); err == nil {
		t.Errorf("a payload was executed: /tmp/kombu-chaos-pwned exists")
	}
	dead := deadLettered(ctx, t, led, adm, dlq)
	if len(dead) != len(payloads) {
		t.Errorf("dead-lettered %v, want each refused message once (rejected, not requeued)", dead)
	}
	if d := depth(ctx, t, adm, qname); d != 0 {
		t.Errorf("%d refused messages back in the queue", d)
	}
	r := led.Check()
	row.Result = &r
	cons.Close()
	adm.Close()
	leaks()
}

// selfSigned returns a TLS certificate for 127.0.0.1 and localhost signed
// by a new CA, and the CA's PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kombu-go chaos CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// tlsServer is a TLS listener that completes handshakes and hangs up: it
// tells whether a client accepted its certificate.
type tlsServer struct {
	ln        net.Listener
	completed atomic.Int64 // handshakes the client finished
	refused   atomic.Int64 // handshakes the client aborted
}

func startTLSServer(t *testing.T, cert tls.Certificate) *tlsServer {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					s.refused.Add(1)
					return
				}
				s.completed.Add(1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *tlsServer) close() { s.ln.Close() }

// 15b. amqps:// and rediss:// to a server whose certificate no system root
// signs: refused unless the CA is configured.
func TestSecurity15bTLSVerification(t *testing.T) {
	row := figure(t, "15b", "amqps:// and rediss:// to a self-signed server: refused unless its CA is configured", "amqp+redis")
	cert, caPEM := selfSigned(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	leaks := leakCheck(t)
	for _, scheme := range []string{"amqps", "rediss"} {
		srv := startTLSServer(t, cert)
		base := fmt.Sprintf("%s://guest:guest@%s/", scheme, srv.ln.Addr())
		if scheme == "rediss" {
			base = fmt.Sprintf("rediss://%s/0", srv.ln.Addr())
		}
		try := func(url string, opts ...kombu.DialOption) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := kombu.Dial(ctx, url, append([]kombu.DialOption{kombu.WithConnectTimeout(3 * time.Second), kombu.WithReconnectPolicy(kombu.NoRetry())}, opts...)...)
			if err == nil {
				c.Close()
			}
			return err
		}
		// Unverified: refused, with a certificate error, and the server saw
		// the client abort the handshake.
		err := try(base)
		var uae x509.UnknownAuthorityError
		if err == nil || (!errors.As(err, &uae) && !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("%s to a self-signed server: %v, want a certificate verification error", scheme, err)
		}
		if !eventually(2*time.Second, func() bool { return srv.refused.Load() > 0 }) || srv.completed.Load() > 0 {
			t.Errorf("%s: the client did not refuse the handshake (completed %d, refused %d)", scheme, srv.completed.Load(), srv.refused.Load())
		}
		row.Note("%s without the CA: %v", scheme, firstLine(err))
		// With the CA (WithTLSConfig, then the URL's ssl_ca_certs) the
		// handshake completes; the fake server then hangs up.
		before := srv.completed.Load()
		err = try(base, kombu.WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
		if !eventually(2*time.Second, func() bool { return srv.completed.Load() > before }) {
			t.Errorf("%s with WithTLSConfig(RootCAs: the CA): the handshake did not complete (%v)", scheme, err)
		}
		before = srv.completed.Load()
		err = try(base + "?ssl_ca_certs=" + caFile)
		if !eventually(2*time.Second, func() bool { return srv.completed.Load() > before }) {
			t.Errorf("%s with ssl_ca_certs: the handshake did not complete (%v)", scheme, err)
		}
		srv.close()
	}
	leaks()
}

// 15d. The explicit opt-out of verification (insecure=true) works, and says
// so in the logs (reliability.md §5: "an explicit, loudly logged opt-out").
func TestSecurity15dInsecureOptOutIsLogged(t *testing.T) {
	row := figure(t, "15d", "explicit opt-out (?insecure=true) to a self-signed server: allowed, and logged", "amqp+redis")
	cert, _ := selfSigned(t)
	for _, scheme := range []string{"amqps", "rediss"} {
		srv := startTLSServer(t, cert)
		url := fmt.Sprintf("%s://guest:guest@%s/?insecure=true", scheme, srv.ln.Addr())
		if scheme == "rediss" {
			url = fmt.Sprintf("rediss://%s/0?insecure=true", srv.ln.Addr())
		}
		sink := &logSink{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := kombu.Dial(ctx, url, kombu.WithConnectTimeout(3*time.Second), kombu.WithReconnectPolicy(kombu.NoRetry()), kombu.WithLogger(sink.logger()))
		cancel()
		if err == nil {
			c.Close()
		}
		if !eventually(2*time.Second, func() bool { return srv.completed.Load() > 0 }) {
			t.Errorf("%s?insecure=true: the handshake did not complete (%v)", scheme, err)
		}
		logged := len(sink.find("insecure")) + len(sink.find("verif")) + len(sink.find("InsecureSkipVerify"))
		row.Note("%s: opt-out logged: %t", scheme, logged > 0)
		if logged == 0 {
			t.Errorf("%s?insecure=true turned certificate verification off without a log record saying so", scheme)
		}
	}
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// 15c. A wrong password never appears in logs, errors or panics, and URLs
// are shown with the password masked.
func TestSecurity15cPasswordNeverLogged(t *testing.T) {
	row := figure(t, "15c", "authentication failures with a known wrong password; logs, errors and URL() searched for it", "amqp+redis")
	ba := rabbit(t)
	br := redisBroker(t)
	leaks := leakCheck(t)
	const secret = "Chaos-S3cret-7f3a9"
	sink := &logSink{}
	policy := kombu.RetryPolicy{MaxRetries: 2, IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 100 * time.Millisecond}
	urls := []string{
		fmt.Sprintf("amqp://guest:%s@%s//", secret, ba.addr),
		fmt.Sprintf("amqp://chaos-nobody:%s@%s//", secret, ba.addr),
		// This Redis has no requirepass, so only a named user that does not
		// exist makes authentication fail (WRONGPASS).
		fmt.Sprintf("redis://chaos-nobody:%s@%s/%d", secret, br.addr, redisDB),
	}
	var texts []string
	for _, u := range urls {
		func() {
			defer func() {
				if r := recover(); r != nil {
					texts = append(texts, fmt.Sprint(r))
					t.Errorf("Dial panicked: %v", r)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := kombu.Dial(ctx, u, kombu.WithLogger(sink.logger()), kombu.WithReconnectPolicy(policy), kombu.WithConnectTimeout(3*time.Second))
			if err == nil {
				texts = append(texts, c.URL())
				c.Close()
				t.Errorf("Dial with a wrong password succeeded (%s)", c.URL())
				return
			}
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			var oe *kombu.OperationalError
			if errors.As(err, &oe) {
				texts = append(texts, oe.URL)
			}
			row.Note("%s → %s", strings.Split(u, "://")[0], firstLine(err))
		}()
	}
	// A connection that works shows its URL masked: the broker's own
	// credentials, and a password this Redis (no requirepass) lets through.
	ctx := ctxFor(t, 10*time.Second)
	for _, u := range []string{ba.amqpURL(ba.addr), fmt.Sprintf("redis://:%s@%s/%d", secret, br.addr, redisDB)} {
		c, err := kombu.Dial(ctx, u, kombu.WithLogger(sink.logger()))
		if err != nil {
			t.Fatal(err)
		}
		shown := c.URL()
		texts = append(texts, shown)
		if pw, ok := ba.u.User.Password(); ok && strings.HasPrefix(u, "amqp") && strings.Contains(shown, ":"+pw+"@") {
			t.Errorf("URL() shows the password: %s", shown)
		}
		row.Note("URL() of a working connection: %s", shown)
		c.Close()
	}
	texts = append(texts, sink.all())
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("the password appears in: %s", s)
		}
	}
	if len(sink.recs) == 0 {
		t.Errorf("nothing was logged: the check would prove nothing")
	}
	t.Logf("%d log records and %d error/URL texts searched", len(sink.recs), len(texts))
	leaks()
}
