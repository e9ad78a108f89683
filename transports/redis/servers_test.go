package redis_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// Tests that need a Redis of their own (TLS, Sentinel) start one with the
// redis-server binary beside the test Redis, on a free port.

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServer(t *testing.T, port int, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		brokertest.Unavailable(t, "redis-server not installed (apt-get install redis-server)")
	}
	cmd := exec.Command(bin, args...)
	out, _ := os.CreateTemp(t.TempDir(), "redis-*.log")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("redis-server %v did not start: %v\n%s", args, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeCerts writes a CA and a server certificate for the given DNS name
// (and no IP address) and returns the files' paths.
func writeCerts(t *testing.T, dnsName string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kombu-go test CA"},
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
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// roundTrip publishes and gets a message through url.
func roundTrip(url string) error {
	u, err := transport.Parse(url)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := kredis.Driver{}.Open(ctx, u, transport.Config{})
	if err != nil {
		return err
	}
	defer c.Close()
	q := "rt-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := c.Publish(ctx, &transport.Publishing{RoutingKey: q, Body: []byte("hi")}); err != nil {
		return err
	}
	d, err := c.Get(ctx, q, false)
	if err != nil {
		return err
	}
	if string(d.Body) != "hi" {
		return fmt.Errorf("got %q", d.Body)
	}
	return d.Acknowledger.Ack(d.Tag, false)
}

func TestTLSIsVerifiedUnlessToldOtherwise(t *testing.T) {
	port := freePort(t)
	ca, cert, key := writeCerts(t, "localhost")
	startServer(t, port, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	byName := fmt.Sprintf("rediss://localhost:%d/0", port)
	byIP := fmt.Sprintf("rediss://127.0.0.1:%d/0", port)
	cases := []struct {
		url string
		ok  bool
	}{
		{byName, false}, // not signed by a system root
		{byName + "?ssl_ca_certs=" + ca, true},
		{byIP + "?ssl_ca_certs=" + ca, false}, // the certificate does not name 127.0.0.1
		{byIP + "?ssl_ca_certs=" + ca + "&ssl_check_hostname=false", true},
		{byIP + "?insecure=true", true},
		{byIP + "?ssl_cert_reqs=CERT_NONE", true},
		{byIP + "?ssl_cert_reqs=required", false},
		{fmt.Sprintf("redis://localhost:%d/0?ssl=true&ssl_ca_certs=%s", port, ca), true},
	}
	for _, tc := range cases {
		err := roundTrip(tc.url)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.url, err)
		}
		if !tc.ok && (err == nil || !isCertError(err)) {
			t.Errorf("%s: %v, want a certificate error", tc.url, err)
		}
	}
	// TLS options on a URL without TLS are refused rather than ignored.
	u, _ := transport.Parse("redis://h?ssl_ca_certs=x")
	if _, err := (kredis.Driver{}).Open(context.Background(), u, transport.Config{}); !errors.Is(err, transport.ErrInvalidURL) {
		t.Errorf("ssl_ca_certs on redis://: %v", err)
	}
}

func isCertError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "certificate") || strings.Contains(s, "x509")
}

func TestSentinel(t *testing.T) {
	base := brokertest.RedisURL(t)
	u, _ := transport.Parse(base)
	masterHost, masterPortText, _ := net.SplitHostPort(u.HostPort("127.0.0.1", 6379))
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor kombu-test %s %s 1\nsentinel down-after-milliseconds kombu-test 60000\n",
		port, dir, masterHost, masterPortText)), 0o600)
	startServer(t, port, conf, "--sentinel")
	// The first Sentinel listed is down: go-redis moves on to the next.
	dead := freePort(t)
	e := newEnv(t)
	url := fmt.Sprintf("sentinel://127.0.0.1:%d/%s?master_name=kombu-test&sentinel=127.0.0.1:%d&global_keyprefix=%s",
		dead, strings.TrimPrefix(u.Path, "/"), port, e.prefix)
	if err := roundTrip(url); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	bad := fmt.Sprintf("sentinel://127.0.0.1:%d/0?master_name=nobody", port)
	if err := roundTrip(bad); err == nil {
		t.Errorf("%s: connected to a master Sentinel does not know", bad)
	}
}

func TestACLUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user := "kombu-go-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := e.raw.Do(ctx, "ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all").Err(); err != nil {
		brokertest.Unavailable(t, "cannot create an ACL user on the test Redis: "+err.Error())
	}
	t.Cleanup(func() { e.raw.Do(context.Background(), "ACL", "DELUSER", user) })
	u, _ := transport.Parse(e.base)
	hostPort := u.HostPort("127.0.0.1", 6379)
	good := fmt.Sprintf("redis://%s:s3cret@%s/%s?global_keyprefix=%s", user, hostPort, strings.TrimPrefix(u.Path, "/"), e.prefix)
	if err := roundTrip(good); err != nil {
		t.Fatalf("ACL user: %v", err)
	}
	bad := fmt.Sprintf("redis://%s:wrong@%s/0", user, hostPort)
	err := roundTrip(bad)
	if !errors.Is(err, transport.ErrAccessRefused) {
		t.Errorf("wrong password: %v, want ErrAccessRefused", err)
	}
	if strings.Contains(fmt.Sprint(err), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
}
