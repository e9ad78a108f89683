package sqs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
)

const secret = "s3cr3t/key"

// bare is the SDK's own client on the emulator, for what the tests put or
// look at behind the transport's back.
func (g *goaws) bare() *awssqs.Client {
	return awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", secret, ""),
		BaseEndpoint: aws.String("http://" + g.addr),
	})
}

func openURL(t *testing.T, raw string) (transport.Conn, error) {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		return nil, err
	}
	return sqs.Driver{}.Open(context.Background(), u, transport.Config{})
}

func TestBadURLs(t *testing.T) {
	for _, raw := range []string{
		"sqs://AKID:" + strings.ReplaceAll(secret, "/", "%2F") + "@?bogus=1",
		"sqs://AKID:" + strings.ReplaceAll(secret, "/", "%2F") + "@?visibility_timeout=-1",
		"sqs://AKID@",
		"sqs://?emulator=localstack",
		"sqs://?max_message_size=12",
	} {
		_, err := openURL(t, raw)
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: err = %v, want ErrInvalidURL", raw, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the secret: %v", raw, err)
		}
	}
	u, err := transport.Parse("sqs://AKID:" + strings.ReplaceAll(secret, "/", "%2F") + "@127.0.0.1:9?region=eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if s := u.String(); strings.Contains(s, "s3cr3t") {
		t.Errorf("URL() shows the secret: %s", s)
	}
}

func TestBodyOverTheLimit(t *testing.T) {
	g := startGoaws(t)
	c := g.open(t, "")
	defer c.Close()
	q := uniq("big-")
	// Kombu's envelope holds the body in base64 (150 KiB: 200 KiB), and
	// SQS's body is the envelope in base64 again (267 KiB).
	err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: make([]byte, 150*1024), Confirm: true})
	if !errors.Is(err, transport.ErrLimitExceeded) {
		t.Fatalf("a body of 150 KiB (267 KiB as sent) gave %v, want ErrLimitExceeded", err)
	}
	// Without base64, it fits.
	c2 := g.open(t, "sqs-base64-encoding=false")
	defer c2.Close()
	if err := c2.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: make([]byte, 150*1024), Confirm: true}); err != nil {
		t.Fatalf("a body of 150 KiB without base64: %v", err)
	}
	d := getWithin(t, c, q, 5*time.Second)
	if len(d.Body) != 150*1024 {
		t.Errorf("got %d bytes back", len(d.Body))
	}
	_ = d.Acknowledger.Ack(d.Tag, false)
}

func TestQueueNameSQSRefuses(t *testing.T) {
	g := startGoaws(t)
	c := g.open(t, "")
	defer c.Close()
	_, err := c.DeclareQueue(ctx(t), transport.Queue{Name: "naïve queue"})
	if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), "naïve queue") {
		t.Fatalf("declare of a name SQS refuses: %v, want ErrNotSupported naming it", err)
	}
	// A name too long for SQS is shortened, stably.
	long := strings.Repeat("x", 120)
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: long}); err != nil {
		t.Fatal(err)
	}
	if info, err := c.DeclareQueue(ctx(t), transport.Queue{Name: long, Passive: true}); err != nil || info.Messages != 0 {
		t.Fatalf("passive declare of the long name: %v %+v", err, info)
	}
}

func TestEndpointThatDoesNotAnswer(t *testing.T) {
	// A port nobody listens on: refused at once; the SDK retries, ctx
	// bounds it.
	c, err := openURL(t, "sqs://AKID:"+strings.ReplaceAll(secret, "/", "%2F")+"@127.0.0.1:9?region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.DeclareQueue(cx, transport.Queue{Name: "q"})
	if err == nil {
		t.Fatal("declare on an endpoint that does not answer succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v, ctx allowed 2s", el)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the error shows the secret: %v", err)
	}
	t.Logf("error: %v", err)
}

func TestNoCredentials(t *testing.T) {
	g := startGoaws(t)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/config")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c, err := openURL(t, "sqs://"+g.addr+"?region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.DeclareQueue(ctx(t), transport.Queue{Name: uniq("nocreds-")})
	if !errors.Is(err, transport.ErrAccessRefused) || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Fatalf("declare without credentials: %v, want ErrAccessRefused saying so", err)
	}
}

// A handler longer than the visibility timeout keeps its message: the
// transport extends it, and a second consumer does not get it meanwhile.
func TestLongHandlerKeepsItsMessage(t *testing.T) {
	g := startGoaws(t)
	a, b := g.open(t, ""), g.open(t, "")
	defer a.Close()
	defer b.Close()
	q := uniq("long-")
	if _, err := a.DeclareQueue(ctx(t), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: []byte("slow"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	d := getWithin(t, a, q, 5*time.Second)
	deadline := time.Now().Add(2 * testVisibility * time.Second)
	for time.Now().Before(deadline) {
		if m, err := b.Get(ctx(t), q, false); err == nil {
			t.Fatalf("a second consumer got %q while the first still handled it", m.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep((testVisibility + 1) * time.Second)
	if m, err := b.Get(ctx(t), q, false); err == nil {
		t.Fatalf("an acked message came back: %q", m.Body)
	}
}

// A message that is not a Kombu envelope goes to the quarantine queue, not
// lost, and the consumer goes on.
func TestForeignMessageQuarantined(t *testing.T) {
	g := startGoaws(t)
	c := g.open(t, "")
	defer c.Close()
	q := uniq("foreign-")
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	bare := g.bare()
	url, err := bare.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(q)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: url.QueueUrl, MessageBody: aws.String("not a kombu message")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: []byte("good"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	d := getWithin(t, c, q, 5*time.Second)
	if string(d.Body) != "good" {
		t.Fatalf("got %q, want the good message after the foreign one", d.Body)
	}
	_ = d.Acknowledger.Ack(d.Tag, false)
	qurl, err := bare.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(q + "-quarantine")})
	if err != nil {
		t.Fatalf("no quarantine queue: %v", err)
	}
	out, err := bare.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: qurl.QueueUrl, MaxNumberOfMessages: 10})
	if err != nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "not a kombu message" {
		t.Fatalf("quarantine holds %+v (%v), want the foreign message", out, err)
	}
}

// A consumer killed with SIGKILL loses nothing: SQS delivers its message
// again once its visibility runs out.
func TestKilledConsumer(t *testing.T) {
	if os.Getenv("SQS_KILL_CHILD") != "" {
		return
	}
	g := startGoaws(t)
	q := uniq("kill-")
	c := g.open(t, "")
	defer c.Close()
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: []byte("survivor"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), "SQS_KILL_CHILD="+g.URL("")+"|"+q)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(seen.String(), "TAKEN") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("child did not take the message: %s", seen.String())
		}
		n, err := out.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if m, err := c.Get(ctx(t), q, false); err == nil {
		t.Fatalf("got %q while the child holds it", m.Body)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	d := getWithin(t, c, q, 3*testVisibility*time.Second)
	if string(d.Body) != "survivor" {
		t.Fatalf("got %q", d.Body)
	}
	_ = d.Acknowledger.Ack(d.Tag, false)
}

// TestKillChild is the consumer TestKilledConsumer kills.
func TestKillChild(t *testing.T) {
	env := os.Getenv("SQS_KILL_CHILD")
	if env == "" {
		t.Skip("run by TestKilledConsumer")
	}
	url, q, _ := strings.Cut(env, "|")
	c, err := openURL(t, url)
	if err != nil {
		t.Fatal(err)
	}
	getWithin(t, c, q, 10*time.Second)
	os.Stdout.WriteString("TAKEN\n")
	time.Sleep(time.Minute)
}
