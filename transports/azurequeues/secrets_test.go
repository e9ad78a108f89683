package azurequeues_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/sas"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/azurequeues"
)

// openLogged opens raw with a debug logger writing to buf.
func openLogged(raw string, buf *brokertest.LogBuffer, d time.Duration) (transport.Conn, error) {
	u, err := transport.Parse(raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return azurequeues.Driver{}.Open(ctx, u, transport.Config{Logger: log})
}

// sasToken signs an account SAS with Azurite's development key: the
// signature (sig=...) is the secret.
func sasToken(t *testing.T) string {
	t.Helper()
	cred, err := azqueue.NewSharedKeyCredential(devAccount, devKey)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := sas.AccountSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP, // Azurite here serves http
		ExpiryTime:    time.Now().Add(time.Hour),
		Permissions:   (&sas.AccountPermissions{Read: true, Write: true, Delete: true, List: true, Add: true, Create: true, Update: true, Process: true}).String(),
		ResourceTypes: (&sas.AccountResourceTypes{Service: true, Container: true, Object: true}).String(),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return qp.Encode()
}

// The secret (an account key, or a SAS token's signature) appears in none
// of the error, the transport's log (at debug level) and URL(), when the
// account refuses it, when nothing listens, and when the emulator stops
// under a running consumer (the consumer's retries log the SDK's errors,
// which name the request's URL).
func TestSecretsNeverShown(t *testing.T) {
	a := startAzurite(t)
	tok := sasToken(t)
	sig, err := url.ParseQuery(tok)
	if err != nil || sig.Get("sig") == "" {
		t.Fatalf("SAS token %q: %v", tok, err)
	}
	wrongKey := "czNjcmV0czNjcmV0czNjcmV0" // base64, refused by the account
	forged := strings.Replace(tok, "sig="+url.QueryEscape(sig.Get("sig")), "sig=s3cretSignature", 1)
	secrets := []string{devKey, url.QueryEscape(devKey), wrongKey, "s3cretSignature", sig.Get("sig"), url.QueryEscape(sig.Get("sig"))}
	check := func(what string, texts ...string) {
		t.Helper()
		for _, text := range texts {
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("%s: the secret %.8s... is shown in %q", what, s, text)
				}
			}
		}
	}
	silent := brokertest.SilentListener(t).Addr
	for _, c := range []struct {
		name, url string
		want      error
	}{
		{"refused key", "azurestoragequeues://" + url.QueryEscape(wrongKey) + "@http://" + a.addr + "/" + devAccount, azurequeues.ErrCredentials},
		{"forged SAS", "azurestoragequeues://" + url.QueryEscape(forged) + "@http://" + a.addr + "/" + devAccount, azurequeues.ErrCredentials},
		{"key, nothing listens", "azurestoragequeues://" + url.QueryEscape(devKey) + "@http://127.0.0.1:1/" + devAccount, nil},
		{"SAS, nothing listens", "azurestoragequeues://" + url.QueryEscape(tok) + "@http://127.0.0.1:1/" + devAccount, nil},
		{"SAS, silent endpoint", "azurestoragequeues://" + url.QueryEscape(tok) + "@http://" + silent + "/" + devAccount, nil},
	} {
		var buf brokertest.LogBuffer
		conn, err := openLogged(c.url, &buf, 3*time.Second)
		if err == nil {
			_ = conn.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		check(c.name, err.Error(), buf.String())
	}

	// Through the runtime, as an application does: URL(), and a Consumer
	// on a SAS connection while Azurite stops (its retries log failures).
	var buf brokertest.LogBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "azurestoragequeues://"+url.QueryEscape(tok)+"@http://"+a.addr+"/"+devAccount+"?polling_interval=0.05", kombu.WithLogger(log))
	if err != nil {
		t.Fatalf("Dial with a SAS token: %v", err)
	}
	defer conn.Close()
	check("URL()", conn.URL())
	if !strings.Contains(conn.URL(), "**") {
		t.Errorf("URL() %q does not show the credential masked", conn.URL())
	}
	q := kombu.Queue{Name: "secrets"}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(conn).Publish(ctx, "x", kombu.WithRoutingKey(q.Name)); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 10)
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
		got <- struct{}{}
		return nil
	})}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- consumer.Run(runCtx) }()
	<-got
	a.stop()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	pubErr := kombu.NewProducer(conn).Publish(pctx, "y", kombu.WithRoutingKey(q.Name))
	pcancel()
	waitFor(t, 20*time.Second, "the consumer to log a failed take", func() bool {
		return strings.Contains(buf.String(), "failed")
	})
	stop()
	runErr := <-ran
	if pubErr == nil {
		t.Fatal("a publish with Azurite stopped succeeded")
	}
	texts := []string{buf.String(), pubErr.Error()}
	if runErr != nil {
		texts = append(texts, runErr.Error())
	}
	check("with Azurite stopped", texts...)
	t.Logf("log %d bytes; publish: %v; run: %v", len(buf.String()), pubErr, runErr)
}

// An endpoint that accepts TCP and never answers: Open returns within its
// context's deadline, with an error that says the account does not
// answer and wraps context.DeadlineExceeded.
func TestEndpointThatNeverAnswers(t *testing.T) {
	addr := brokertest.SilentListener(t).Addr
	u, err := transport.Parse("azurestoragequeues://" + url.QueryEscape(devKey) + "@http://" + addr + "/" + devAccount)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := azurequeues.Driver{}.Open(ctx, u, transport.Config{})
	took := time.Since(start)
	if err == nil {
		_ = conn.Close()
		t.Fatal("Open against a silent endpoint succeeded")
	}
	if took > 2500*time.Millisecond {
		t.Errorf("Open returned after %v, past its 2 s deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("error %q: want one that says the account does not answer, wrapping DeadlineExceeded", err)
	}
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
}
