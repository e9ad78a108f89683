package sqs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
)

// countedCalls counts the actions of the connections of the
// "sqs-counted" scheme: sqs:// with a client whose actions are counted.
var countedCalls = &actions{c: awshttp.NewBuildableClient(), n: map[string]int{}}

func init() { transport.Register("sqs-counted", countedDriver{}) }

type countedDriver struct{}

func (countedDriver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	o, err := parseOptions(u)
	if err != nil {
		return nil, err
	}
	awsCfg, err := loadConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	client := sqs.NewFromConfig(awsCfg, func(so *sqs.Options) {
		so.BaseEndpoint = aws.String(o.endpoint)
		so.HTTPClient = WholeBodies(countedCalls)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return virtual.NewConn(newStore(client, o, endpointKey(o, awsCfg.Region), log), virtual.Config{Name: "sqs", Logger: log, PollInterval: o.pollInterval}), nil
}

// batchRig is a kombu connection whose SQS actions are counted, and a
// plain sqs:// connection to read the queues with, on an in-process goaws.
type batchRig struct {
	conn   *kombu.Connection
	reader transport.Conn
}

func newBatchRig(t *testing.T) *batchRig {
	t.Helper()
	g, err := sqstest.Start(3, MaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	rest := "AKIDTEST:s3cr3t%2Fkey@" + g.Addr() + "?region=us-east-1&emulator=goaws&polling_interval=0.05&visibility_timeout=3"
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "sqs-counted://"+rest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	u, err := transport.Parse("sqs://" + rest)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := Driver{}.Open(ctx, u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })
	return &batchRig{conn: conn, reader: reader}
}

func (r *batchRig) declare(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	if _, err := (kombu.Queue{Name: name}).Declare(context.Background(), r.conn); err != nil {
		t.Fatal(err)
	}
	return name
}

// drain reads the queue's messages (strings) until it is empty.
func (r *batchRig) drain(t *testing.T, queue string) []string {
	t.Helper()
	var got []string
	for {
		d, err := r.reader.Get(context.Background(), queue, true)
		if errors.Is(err, transport.ErrEmpty) {
			return got
		}
		if err != nil {
			t.Fatalf("get %q: %v", queue, err)
		}
		got = append(got, string(d.Body)) // a string goes as text/plain
	}
}

// sends counts the publishing actions of the rig's connection since the
// last call.
func sends(before *[2]int) (single, batch int) {
	s, b := countedCalls.count("SendMessage"), countedCalls.count("SendMessageBatch")
	single, batch = s-before[0], b-before[1]
	before[0], before[1] = s, b
	return single, batch
}

func TestBatchPublishUsesSendMessageBatch(t *testing.T) {
	r := newBatchRig(t)
	ctx := context.Background()
	q1, q2 := r.declare(t, "pb1"), r.declare(t, "pb2")
	var counts [2]int
	sends(&counts)

	// 25 messages to one queue: SendMessageBatch of 10, 10 and 5.
	var batch kombu.Batch
	p := kombu.NewProducer(r.conn)
	var want1 []string
	for i := range 25 {
		want1 = append(want1, "one-"+strconv.Itoa(i))
		if err := p.Publish(ctx, want1[i], kombu.InBatch(&batch), kombu.WithRoutingKey(q1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
	if single, batched := sends(&counts); single != 0 || batched != 3 {
		t.Errorf("25 messages to one queue: %d SendMessage, %d SendMessageBatch; want 0 and 3", single, batched)
	}
	if got := r.drain(t, q1); strings.Join(got, ",") != strings.Join(want1, ",") {
		t.Errorf("queue 1 got %q, want %q", got, want1)
	}

	// 24 messages to two queues in turn: 12 each, two requests a queue.
	var wantA, wantB []string
	for i := range 24 {
		q, body := q1, "a-"+strconv.Itoa(i)
		if i%2 == 1 {
			q, body = q2, "b-"+strconv.Itoa(i)
			wantB = append(wantB, body)
		} else {
			wantA = append(wantA, body)
		}
		if err := p.Publish(ctx, body, kombu.InBatch(&batch), kombu.WithRoutingKey(q)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
	if single, batched := sends(&counts); single != 0 || batched != 4 {
		t.Errorf("24 messages to two queues: %d SendMessage, %d SendMessageBatch; want 0 and 4", single, batched)
	}
	if got := r.drain(t, q1); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Errorf("queue 1 got %q, want %q", got, wantA)
	}
	if got := r.drain(t, q2); strings.Join(got, ",") != strings.Join(wantB, ",") {
		t.Errorf("queue 2 got %q, want %q", got, wantB)
	}
}

func TestBatchPublishOversizeFailsAlone(t *testing.T) {
	r := newBatchRig(t)
	ctx := context.Background()
	q := r.declare(t, "pbbig")
	var batch kombu.Batch
	p := kombu.NewProducer(r.conn)
	var want []string
	for i := range 12 {
		body := "m-" + strconv.Itoa(i)
		if i == 4 {
			body = strings.Repeat("x", MaxMessageSize) // over the limit once base64-encoded
		} else {
			want = append(want, body)
		}
		if err := p.Publish(ctx, body, kombu.InBatch(&batch), kombu.WithRoutingKey(q)); err != nil {
			t.Fatal(err)
		}
	}
	err := batch.Send(ctx)
	var be *kombu.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 12 {
		t.Fatalf("Send: %v; want a *BatchError of 12", err)
	}
	for i, e := range be.Errs {
		if i == 4 {
			if !errors.Is(e, transport.ErrLimitExceeded) {
				t.Errorf("message 4: %v; want ErrLimitExceeded", e)
			}
		} else if e != nil {
			t.Errorf("message %d: %v; want nil", i, e)
		}
	}
	if got := r.drain(t, q); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestPutBatchSplitsBySize: bodies of 100 KiB go two to a request (256
// KiB in all at most), a body near the limit alone.
func TestPutBatchSplitsBySize(t *testing.T) {
	r := newAckRig(t)
	before := r.calls.count("SendMessageBatch")
	var ms []virtual.Message
	for i, n := range []int{75 << 10, 75 << 10, 75 << 10, 180 << 10, 10, 10} { // base64: 100, 100, 100, 240 KiB, 16, 16 bytes
		env := []byte(strconv.Itoa(i) + strings.Repeat(" ", n-len(strconv.Itoa(i))))
		ms = append(ms, virtual.Message{Queue: r.queue, Envelope: env})
	}
	if errs := r.s.PutBatch(context.Background(), ms); errs != nil {
		t.Fatal(errs)
	}
	// [100 100] [100] [240 0 0]
	if n := r.calls.count("SendMessageBatch") - before; n != 3 {
		t.Errorf("%d SendMessageBatch; want 3", n)
	}
	ts, err := r.s.TakeBatch(context.Background(), r.queue, 10)
	if err != nil || len(ts) != 6 {
		t.Fatalf("took %d, %v; want 6", len(ts), err)
	}
	for i, tk := range ts {
		if !strings.HasPrefix(string(tk.Envelope), strconv.Itoa(i)) || len(tk.Envelope) != len(ms[i].Envelope) {
			t.Errorf("message %d: %.10q, %d bytes; want message %d", i, tk.Envelope, len(tk.Envelope), i)
		}
	}
}

// failingBatches answers SendMessageBatch itself: entry 0 failed, entry
// 1 unmentioned, the others stored (as far as the answer says).
type failingBatches struct{ c sqs.HTTPClient }

func (f failingBatches) Do(r *http.Request) (*http.Response, error) {
	var form url.Values
	if r.GetBody != nil {
		if body, err := r.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			form, _ = url.ParseQuery(string(b))
		}
	}
	if form.Get("Action") != "SendMessageBatch" {
		return f.c.Do(r)
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><SendMessageBatchResponse><SendMessageBatchResult>`)
	for k := 2; form.Get(fmt.Sprintf("SendMessageBatchRequestEntry.%d.Id", k+1)) != ""; k++ {
		sum := md5.Sum([]byte(form.Get(fmt.Sprintf("SendMessageBatchRequestEntry.%d.MessageBody", k+1))))
		fmt.Fprintf(&b, `<SendMessageBatchResultEntry><Id>%s</Id><MessageId>m%d</MessageId><MD5OfMessageBody>%s</MD5OfMessageBody></SendMessageBatchResultEntry>`,
			form.Get(fmt.Sprintf("SendMessageBatchRequestEntry.%d.Id", k+1)), k, hex.EncodeToString(sum[:]))
	}
	b.WriteString(`<BatchResultErrorEntry><Id>0</Id><Code>AWS.SimpleQueueService.NonExistentQueue</Code><Message>refused s3cr3t/key</Message><SenderFault>true</SenderFault></BatchResultErrorEntry>`)
	b.WriteString(`</SendMessageBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SendMessageBatchResponse>`)
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(b.String())), Request: r,
	}, nil
}

// TestPutBatchEntryFailures: an entry SQS lists as failed, and one it
// lists nowhere, fail alone, with SQS's code read as Put reads a
// request's, and the secret masked.
func TestPutBatchEntryFailures(t *testing.T) {
	r := newAckRig(t)
	g, err := sqstest.Start(3, MaxMessageSize) // the process's, the rig's
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.New(sqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "s3cr3t/key", ""),
		BaseEndpoint: aws.String("http://" + g.Addr()),
		HTTPClient:   WholeBodies(failingBatches{c: awshttp.NewBuildableClient()}),
	})
	s := newStore(client, r.s.o, "putbatch-test|"+r.queue, r.s.log)
	t.Cleanup(func() { _ = s.Close() })
	var ms []virtual.Message
	for i := range 4 {
		ms = append(ms, virtual.Message{Queue: r.queue, Envelope: []byte(`{"n": ` + strconv.Itoa(i) + `}`)})
	}
	errs := s.PutBatch(context.Background(), ms)
	if len(errs) != 4 {
		t.Fatalf("errs %v; want 4", errs)
	}
	var e *Error
	if !errors.As(errs[0], &e) || e.Code != "AWS.SimpleQueueService.NonExistentQueue" || !errors.Is(errs[0], transport.ErrNotFound) {
		t.Errorf("entry 0: %v; want an *Error with SQS's code, matching ErrNotFound", errs[0])
	}
	if errs[0] != nil && strings.Contains(errs[0].Error(), "s3cr3t") {
		t.Errorf("entry 0: the secret shows: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "neither") {
		t.Errorf("entry 1: %v; want an error for an entry SQS did not mention", errs[1])
	}
	if errs[2] != nil || errs[3] != nil {
		t.Errorf("entries 2 and 3: %v, %v; want nil", errs[2], errs[3])
	}
}
