package sqs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Dead-lettering by SQS itself: a queue with a RedrivePolicy moves a
// message that was received more than maxReceiveCount times to its
// dead-letter queue. A kombu-go consumer that rejects a message with
// requeue makes it visible again at once (ChangeMessageVisibility 0), and
// each receive counts, so the message ends in the dead-letter queue, as
// with Python Kombu (whose reject with requeue does the same).
//
// SQS moves the message on the receive after the maxReceiveCount-th:
// the message is delivered maxReceiveCount times. goaws counts the
// message's returns instead (each ChangeMessageVisibility 0 or expired
// visibility) and moves it when they exceed maxReceiveCount, so it
// delivers it once more: maxReceiveCount+1 times. The test accepts
// either and logs which.
func TestRedrivePolicyDeadLetters(t *testing.T) {
	g := startGoaws(t)
	c := g.open(t, "")
	defer c.Close()
	bare := g.bare()
	const maxReceive = 3

	dlq := uniq("redrive-dlq-")
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: dlq}); err != nil {
		t.Fatal(err)
	}
	dlqURL, err := bare.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(dlq)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := bare.GetQueueAttributes(ctx(t), &awssqs.GetQueueAttributesInput{
		QueueUrl: dlqURL.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		t.Fatalf("no QueueArn for %s: %v", dlq, attrs.Attributes)
	}

	// The source queue is made with its policy by the SDK, as an operator
	// would; the transport then uses it as it finds it.
	q := uniq("redrive-")
	if _, err := bare.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String(q), Attributes: map[string]string{
		"VisibilityTimeout": fmt.Sprint(testVisibility),
		"RedrivePolicy":     fmt.Sprintf(`{"maxReceiveCount":"%d","deadLetterTargetArn":"%s"}`, maxReceive, arn),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: []byte("poison"), Confirm: true}); err != nil {
		t.Fatal(err)
	}

	deliveries := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("after %d deliveries the message is in neither queue", deliveries)
		}
		if m, err := c.Get(ctx(t), dlq, false); err == nil {
			if string(m.Body) != "poison" {
				t.Fatalf("the dead-letter queue holds %q", m.Body)
			}
			if err := m.Acknowledger.Ack(m.Tag, false); err != nil {
				t.Fatal(err)
			}
			break
		} else if !errorsIsEmpty(err) {
			t.Fatal(err)
		}
		if deliveries > maxReceive+1 {
			t.Fatalf("delivered %d times with maxReceiveCount %d, and not in the dead-letter queue", deliveries, maxReceive)
		}
		m, err := c.Get(ctx(t), q, false)
		if errorsIsEmpty(err) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		deliveries++
		if deliveries > 1 && !m.Redelivered {
			t.Errorf("delivery %d is not marked redelivered", deliveries)
		}
		if err := m.Acknowledger.Reject(m.Tag, true); err != nil {
			t.Fatal(err)
		}
	}
	if deliveries != maxReceive && deliveries != maxReceive+1 {
		t.Errorf("dead-lettered after %d deliveries, want %d (SQS) or %d (goaws)", deliveries, maxReceive, maxReceive+1)
	}
	if m, err := c.Get(ctx(t), q, false); err == nil {
		t.Errorf("the source queue still holds %q", m.Body)
	}
	t.Logf("dead-lettered by the redrive policy after %d deliveries rejected with requeue (maxReceiveCount %d)", deliveries, maxReceive)
}
