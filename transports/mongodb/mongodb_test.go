package mongodb_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func openURL(ctx context.Context, raw string) (transport.Conn, error) {
	u, err := transport.Parse(raw)
	if err != nil {
		return nil, err
	}
	return mongodb.Driver{}.Open(ctx, u, transport.Config{})
}

func TestBadURLs(t *testing.T) {
	for _, raw := range []string{
		"mongodb://u:s3cr3t@127.0.0.1:1/bad.db",
		"mongodb://u:s3cr3t@127.0.0.1:1/db?visibility_timeout=0",
		"mongodb://u:s3cr3t@127.0.0.1:1/db?connectTimeoutMS=notanumber",
	} {
		_, err := openURL(context.Background(), raw)
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: err = %v, want ErrInvalidURL", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the password: %v", raw, err)
		}
	}
}

func TestServerThatDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := openURL(ctx, "mongodb://u:s3cr3t@127.0.0.1:9/db")
	if err == nil {
		t.Fatal("opened a connection to nothing")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v, ctx allowed 2s", el)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the error shows the password: %v", err)
	}
	t.Logf("error: %v", err)
}

// A document that is not a Kombu envelope goes to the quarantine
// collection, and the consumer goes on.
func TestForeignDocumentQuarantined(t *testing.T) {
	s := ferret(t)
	c := s.open(t, "foreign", "")
	defer c.Close()
	q := uniq("foreign-")
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database("foreign")
	if _, err := db.Collection("messages").InsertOne(context.Background(), bson.D{{Key: "payload", Value: "not a kombu message"}, {Key: "queue", Value: q}, {Key: "priority", Value: 9}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(context.Background(), &transport.Publishing{RoutingKey: q, Body: []byte("good"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	d := getWithin(t, c, q, 5*time.Second)
	if string(d.Body) != "good" {
		t.Fatalf("got %q, want the good message after the foreign one", d.Body)
	}
	_ = d.Acknowledger.Ack(d.Tag, false)
	n, err := db.Collection("messages.kombu_go_quarantine").CountDocuments(context.Background(), bson.D{{Key: "queue", Value: q}, {Key: "payload", Value: "not a kombu message"}})
	if err != nil || n != 1 {
		t.Fatalf("quarantine holds %d (%v), want the foreign document", n, err)
	}
}

// A consumer killed with SIGKILL loses nothing: its message comes back,
// marked redelivered, once its lease runs out.
func TestKilledConsumer(t *testing.T) {
	if os.Getenv("MONGO_KILL_CHILD") != "" {
		return
	}
	s := ferret(t)
	q := uniq("kill-")
	c := s.open(t, "kill", "")
	defer c.Close()
	if err := c.Publish(context.Background(), &transport.Publishing{RoutingKey: q, Body: []byte("survivor"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), "MONGO_KILL_CHILD="+s.URL("kill", "")+"|"+q)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "TAKEN") {
		n, err := out.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("child did not take the message: %s", seen.String())
		}
	}
	if m, err := c.Get(context.Background(), q, false); err == nil {
		t.Fatalf("got %q while the child holds it", m.Body)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	d := getWithin(t, c, q, 10*time.Second)
	if string(d.Body) != "survivor" || !d.Redelivered {
		t.Fatalf("got %q (redelivered %v), want survivor, redelivered", d.Body, d.Redelivered)
	}
	_ = d.Acknowledger.Ack(d.Tag, false)
}

// TestKillChild is the consumer TestKilledConsumer kills.
func TestKillChild(t *testing.T) {
	env := os.Getenv("MONGO_KILL_CHILD")
	if env == "" {
		t.Skip("run by TestKilledConsumer")
	}
	url, q, _ := strings.Cut(env, "|")
	c, err := openURL(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	getWithin(t, c, q, 10*time.Second)
	os.Stdout.WriteString("TAKEN\n")
	time.Sleep(time.Minute)
}
