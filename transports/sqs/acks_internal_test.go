package sqs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
)

// actions counts the SQS actions a client sends.
type actions struct {
	c  sqs.HTTPClient
	mu sync.Mutex
	n  map[string]int
}

func (a *actions) Do(r *http.Request) (*http.Response, error) {
	if r.GetBody != nil {
		if body, err := r.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			if form, err := url.ParseQuery(string(b)); err == nil {
				a.mu.Lock()
				a.n[form.Get("Action")]++
				a.mu.Unlock()
			}
		}
	}
	return a.c.Do(r)
}

func (a *actions) count(action string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[action]
}

// ackRig is a store on an in-process goaws whose acks wait for a full
// batch or Close (no linger), with its client's actions counted.
type ackRig struct {
	s      *store
	client *sqs.Client
	calls  *actions
	logs   *brokertest.LogBuffer
	queue  string
	url    string
}

func newAckRig(t *testing.T) *ackRig {
	t.Helper()
	g, err := sqstest.Start(3, MaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	calls := &actions{c: awshttp.NewBuildableClient(), n: map[string]int{}}
	client := sqs.New(sqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "s3cr3t/key", ""),
		BaseEndpoint: aws.String("http://" + g.Addr()),
		HTTPClient:   WholeBodies(calls),
	})
	logs := &brokertest.LogBuffer{}
	o := &options{secretKey: "s3cr3t/key", visibility: 3, base64: true, maxMessageSize: MaxMessageSize, goaws: true}
	queue := fmt.Sprintf("acks-%d", time.Now().UnixNano())
	s := newStore(client, o, "acks-test|"+queue, slog.New(slog.NewTextHandler(logs, nil)))
	s.deletes.Linger = time.Hour
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if err := s.DeclareQueue(ctx, queue); err != nil {
		t.Fatal(err)
	}
	u, _, err := s.queueURL(ctx, queue, false)
	if err != nil {
		t.Fatal(err)
	}
	return &ackRig{s: s, client: client, calls: calls, logs: logs, queue: queue, url: u}
}

// putTake puts n messages and takes them all.
func (r *ackRig) putTake(t *testing.T, n int) []virtual.Taken {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := r.s.Put(ctx, virtual.Message{Queue: r.queue, Envelope: []byte(`{"n": ` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var ts []virtual.Taken
	for len(ts) < n {
		got, err := r.s.TakeBatch(ctx, r.queue, n-len(ts))
		if err != nil {
			t.Fatalf("took %d of %d: %v", len(ts), n, err)
		}
		ts = append(ts, got...)
	}
	return ts
}

// stored is how many messages goaws holds in the queue, ready or in
// flight (goaws's ApproximateNumberOfMessages counts both): a message an
// ack deleted is no longer among them.
func (r *ackRig) stored(t *testing.T) int {
	t.Helper()
	out, err := r.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(r.url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	return n
}

// Acks go in DeleteMessageBatch calls of ten, the rest on Close, which
// returns once they have landed; no DeleteMessage is sent.
func TestAcksBatched(t *testing.T) {
	r := newAckRig(t)
	ts := r.putTake(t, 25)
	for _, tk := range ts {
		if err := r.s.Ack(context.Background(), tk.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.stored(t) != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("after 25 acks (two full batches), the queue holds %d messages, want 5", r.stored(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.calls.count("DeleteMessageBatch"); got != 2 {
		t.Errorf("DeleteMessageBatch calls before Close = %d, want 2", got)
	}
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.stored(t); n != 0 {
		t.Errorf("after Close the queue holds %d messages, want 0 (Close must send the waiting acks and wait for them)", n)
	}
	if got := r.calls.count("DeleteMessageBatch"); got != 3 {
		t.Errorf("DeleteMessageBatch calls = %d, want 3", got)
	}
	if got := r.calls.count("DeleteMessage"); got != 0 {
		t.Errorf("DeleteMessage calls = %d, want 0", got)
	}
	if strings.Contains(r.logs.String(), "level=WARN") {
		t.Errorf("warnings logged:\n%s", r.logs)
	}
}

// An entry a batch did not delete (here: deleted behind the store's back,
// so its receipt is gone) is deleted again on its own, and its failure
// logged with the message id, not dropped silently.
func TestAckFailedEntryRetriedAndLogged(t *testing.T) {
	r := newAckRig(t)
	ts := r.putTake(t, 3)
	gone := ts[1].Receipt.(receipt)
	if _, err := r.client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(r.url), ReceiptHandle: aws.String(gone.handle)}); err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts {
		if err := r.s.Ack(context.Background(), tk.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := r.calls.count("DeleteMessageBatch"); got != 1 {
		t.Errorf("DeleteMessageBatch calls = %d, want 1", got)
	}
	if got := r.calls.count("DeleteMessage"); got != 2 {
		t.Errorf("DeleteMessage calls = %d, want 2 (the test's own, and the failed entry's retry)", got)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "no longer holds") || !strings.Contains(logs, gone.id) {
		t.Errorf("the failed entry (message %s) is not logged:\n%s", gone.id, logs)
	}
	if n := r.stored(t); n != 0 {
		t.Errorf("the queue holds %d messages, want 0", n)
	}
}
