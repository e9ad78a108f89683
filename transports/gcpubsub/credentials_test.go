package gcpubsub_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/gcpubsub"
)

// serviceAccount writes a service account key file (Google's JSON form)
// with a fresh RSA key and the token service at tokenURI, and returns its
// path and the secrets in it: the key's PEM lines and its id.
func serviceAccount(t *testing.T, tokenURI string, mangle func(map[string]any)) (string, []string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	keyID := "kombu-secret-key-id-0123456789abcdef"
	f := map[string]any{
		"type":           "service_account",
		"project_id":     "kombu-test",
		"private_key_id": keyID,
		"private_key":    pemKey,
		"client_email":   "kombu@kombu-test.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      tokenURI,
	}
	if mangle != nil {
		mangle(f)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := []string{keyID}
	for _, line := range strings.Split(pemKey, "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	return path, secrets
}

// dialWith opens gcpubsub://projects/kombu-test through the runtime, with
// the credentials file and a logger writing to a buffer, against the real
// service's endpoint (no emulator): Open gets a token first.
func dialWith(t *testing.T, credsFile string) (*bytes.Buffer, error) {
	t.Helper()
	t.Setenv("PUBSUB_EMULATOR_HOST", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", credsFile)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "gcpubsub://projects/kombu-test", kombu.WithLogger(log))
	if err == nil {
		conn.Close()
		t.Fatalf("Dial with %s: no error", credsFile)
	}
	return &logs, err
}

// noSecret fails if a secret shows in the error, the logs or the URL.
func noSecret(t *testing.T, what string, err error, logs *bytes.Buffer, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%s: the error shows the secret %q: %v", what, s, err)
		}
		if strings.Contains(logs.String(), s) {
			t.Errorf("%s: the logs show the secret %q: %s", what, s, logs)
		}
	}
}

// TestCredentials: a missing or malformed credentials file, or a key the
// token service refuses, fails Dial with ErrCredentials naming the
// problem, and the key shows in none of the error, the logs and the URL.
func TestCredentials(t *testing.T) {
	// The token service, refusing every key as Google's does a revoked one.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`))
	}))
	defer refusing.Close()

	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no-such-key.json")
		logs, err := dialWith(t, path)
		if !errors.Is(err, gcpubsub.ErrCredentials) || !strings.Contains(err.Error(), "no-such-key.json") {
			t.Fatalf("a missing file: %v, want ErrCredentials naming the file", err)
		}
		noSecret(t, "missing", err, logs, nil)
		t.Logf("missing: %v", err)
	})
	t.Run("not JSON", func(t *testing.T) {
		path, secrets := serviceAccount(t, refusing.URL, nil)
		b, _ := os.ReadFile(path)
		if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil { // cut in the middle of the key
			t.Fatal(err)
		}
		logs, err := dialWith(t, path)
		if !errors.Is(err, gcpubsub.ErrCredentials) {
			t.Fatalf("a cut file: %v, want ErrCredentials", err)
		}
		noSecret(t, "not JSON", err, logs, secrets)
		t.Logf("not JSON: %v", err)
	})
	t.Run("malformed key", func(t *testing.T) {
		path, secrets := serviceAccount(t, refusing.URL, func(f map[string]any) {
			f["private_key"] = strings.Replace(f["private_key"].(string), "BEGIN PRIVATE KEY", "BEGIN NOTHING", 1)
		})
		logs, err := dialWith(t, path)
		if !errors.Is(err, gcpubsub.ErrCredentials) || !strings.Contains(err.Error(), "token") {
			t.Fatalf("a malformed key: %v, want ErrCredentials", err)
		}
		noSecret(t, "malformed key", err, logs, secrets)
		t.Logf("malformed key: %v", err)
	})
	t.Run("refused", func(t *testing.T) {
		path, secrets := serviceAccount(t, refusing.URL, nil)
		logs, err := dialWith(t, path)
		if !errors.Is(err, gcpubsub.ErrCredentials) || !errors.Is(err, transport.ErrAccessRefused) || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("a refused key: %v, want ErrCredentials and ErrAccessRefused with the service's reason", err)
		}
		noSecret(t, "refused", err, logs, secrets)
		t.Logf("refused: %v", err)
	})
	// A URL cannot carry a secret: it is refused, and not shown.
	t.Run("URL", func(t *testing.T) {
		var logs bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := kombu.Dial(ctx, "gcpubsub://user:kombu-url-secret@projects/kombu-test", kombu.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Fatalf("a URL with a password: %v, want ErrInvalidURL", err)
		}
		noSecret(t, "URL", err, &logs, []string{"kombu-url-secret"})
	})
}

// TestURLHasNoSecret: a connection's URL() shows nothing of the
// credentials (they are never in it) and the emulator's address.
func TestURLHasNoSecret(t *testing.T) {
	_, addr := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "gcpubsub://projects/kombu-test?emulator_host="+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if u := conn.URL(); !strings.HasPrefix(u, "gcpubsub://projects/kombu-test") {
		t.Errorf("URL() = %q", u)
	}
}

// TestEndpointSilent: an endpoint that accepts TCP connections and never
// answers (no HTTP/2 handshake) fails Open within its context, with a
// clear error, rather than hanging.
func TestEndpointSilent(t *testing.T) {
	addr := brokertest.SilentListener(t).Addr
	u, _ := transport.Parse("gcpubsub://projects/p?emulator_host=" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := gcpubsub.Driver{}.Open(ctx, u, transport.Config{})
	took := time.Since(start)
	if err == nil || took > 4*time.Second {
		t.Fatalf("Open against a silent endpoint: %v after %v", err, took)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "DeadlineExceeded") {
		t.Errorf("Open against a silent endpoint: %v, want it to say the deadline passed", err)
	}
	t.Logf("silent endpoint: %v after %v", err, took.Round(10*time.Millisecond))
}
