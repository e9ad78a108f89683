package sqs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
)

// The size limit at its boundary: a message whose body as sent is exactly
// max_message_size (SQS's 262144 bytes, which goaws enforces too) is sent
// and arrives whole; four bytes more (the next size Kombu's envelope can
// have: it holds the body in base64) fail with ErrLimitExceeded before
// any request (the recording proxy sees none), where goaws itself refuses
// a body of 262145 bytes.
func TestBodyAtTheLimit(t *testing.T) {
	g := startGoaws(t)
	rec := newRecorder(t, g)
	// Without base64 the SQS body is the envelope itself, which grows by
	// 4 bytes for 3 of body; a header of 0 to 3 bytes makes up the rest.
	c, err := openURL(t, strings.Replace(g.URL("sqs-base64-encoding=false"), g.addr, rec.addr(), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := uniq("limit-")
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	publish := func(bodyLen int, pad string) error {
		return c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: make([]byte, bodyLen), Confirm: true,
			Headers: map[string]any{"pad": pad}})
	}
	// A probe, to learn the envelope's size around the body.
	const k0 = 1000
	if err := publish(3*k0, ""); err != nil {
		t.Fatal(err)
	}
	probe := rec.take()
	if len(probe) != 1 {
		t.Fatalf("%d requests for one publish", len(probe))
	}
	s0 := len(probe[0].Get("MessageBody"))
	d := sqs.MaxMessageSize - s0
	k, pad := k0+d/4, strings.Repeat("p", d%4)
	d0 := getWithin(t, c, q, 5*time.Second)
	_ = d0.Acknowledger.Ack(d0.Tag, false)

	if err := publish(3*k, pad); err != nil {
		t.Fatalf("a message of exactly %d bytes as sent: %v", sqs.MaxMessageSize, err)
	}
	sent := rec.take()
	if len(sent) != 1 || len(sent[0].Get("MessageBody")) != sqs.MaxMessageSize {
		t.Fatalf("sent %d requests, the body %d bytes; want one of %d", len(sent), len(sent[0].Get("MessageBody")), sqs.MaxMessageSize)
	}
	d1 := getWithin(t, c, q, 5*time.Second)
	if len(d1.Body) != 3*k {
		t.Errorf("got %d bytes back, sent %d", len(d1.Body), 3*k)
	}
	_ = d1.Acknowledger.Ack(d1.Tag, false)

	err = publish(3*k+1, pad)
	if !errors.Is(err, transport.ErrLimitExceeded) {
		t.Fatalf("a message of %d bytes as sent: %v, want ErrLimitExceeded", sqs.MaxMessageSize+4, err)
	}
	if n := len(rec.take()); n != 0 {
		t.Errorf("the message over the limit went out in %d requests, want none", n)
	}
	t.Logf("%d bytes as sent: sent; %d: %v", sqs.MaxMessageSize, sqs.MaxMessageSize+4, err)

	// The limit is goaws's too.
	bare := g.bare()
	url, err := bare.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(q)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: url.QueueUrl,
		MessageBody: aws.String(strings.Repeat("x", sqs.MaxMessageSize+1))}); err == nil {
		t.Error("goaws took a body of 262145 bytes: the boundary checked above is not the emulator's")
	}
}
