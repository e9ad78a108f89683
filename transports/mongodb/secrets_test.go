package mongodb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb"
)

// secret is the password of these tests: it must show in no error, log
// record or URL().
const secret = "s3cr3t-Pa55w0rd"

func noSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Errorf("%s shows the password: %s", what, s)
	}
}

// Refused credentials fail Open with ErrAccessRefused, through the
// transport and through kombu.Dial, and the password is in neither the
// error, the log nor URL(). FerretDB on SQLite, as embedded here, has no
// users (its SCRAM authentication needs its "new auth" mode, which its
// embedding API does not offer): it refuses every SCRAM login, the
// driver's default, with MongoDB's AuthenticationFailed (18), the code a
// MongoDB server answers a wrong password with. It takes the PLAIN
// mechanism without checking it, which gives a connection with a
// password whose URL() and logs are checked too.
func TestRefusedCredentials(t *testing.T) {
	s := ferret(t)
	raw := "mongodb://kombu:" + secret + "@" + s.addr + "/creds?polling_interval=0.05"
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "transport.URL.String()", u.String())

	logs := &brokertest.LogBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = mongodb.Driver{}.Open(ctx, u, transport.Config{Logger: logs.Logger()})
	if !errors.Is(err, transport.ErrAccessRefused) {
		t.Fatalf("Open with refused credentials: err = %v, want ErrAccessRefused", err)
	}
	noSecret(t, "Open's error", err.Error())
	t.Logf("Open: %v", err)

	_, err = kombu.Dial(ctx, raw, kombu.WithLogger(logs.Logger()))
	if !errors.Is(err, transport.ErrAccessRefused) {
		t.Fatalf("kombu.Dial with refused credentials: err = %v, want ErrAccessRefused", err)
	}
	noSecret(t, "kombu.Dial's error", err.Error())

	// A connection that holds the password, used and closed, logging at
	// debug level.
	conn, err := kombu.Dial(ctx, raw+"&authMechanism=PLAIN", kombu.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "URL()", conn.URL())
	if !strings.Contains(conn.URL(), "kombu:") {
		t.Errorf("URL() = %s, want the user kept and the password masked", conn.URL())
	}
	q := kombu.Queue{Name: uniq("creds-")}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(conn).Publish(ctx, "hello", kombu.WithRoutingKey(q.Name)); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Get(ctx, conn, kombu.WithAutoAck())
	if err != nil {
		t.Fatal(err)
	}
	_ = msg
	if _, err := q.Delete(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		noSecret(t, "Close's error", err.Error())
	}
	if logs.String() == "" {
		t.Log("nothing was logged")
	}
	noSecret(t, "the log", logs.String())
}

// A server that accepts the TCP connection and never answers: Open
// returns within its context's deadline, with an error naming the server
// (password masked) and wrapping the deadline.
func TestServerThatAcceptsAndStaysSilent(t *testing.T) {
	silent := brokertest.SilentListener(t)
	addr := silent.Addr
	logs := &brokertest.LogBuffer{}
	u, err := transport.Parse("mongodb://kombu:" + secret + "@" + addr + "/silent")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = mongodb.Driver{}.Open(ctx, u, transport.Config{Logger: logs.Logger()})
	el := time.Since(start)
	if err == nil {
		t.Fatal("Open succeeded against a server that never answers")
	}
	if el > 3*time.Second {
		t.Errorf("Open took %v, its context allowed 2s", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("the error does not name the server: %v", err)
	}
	if silent.Accepted() == 0 {
		t.Errorf("the driver never connected: the test did not test a silent server")
	}
	noSecret(t, "the error", err.Error())
	noSecret(t, "the log", logs.String())
	t.Logf("after %v: %v", el.Round(time.Millisecond), err)
}
