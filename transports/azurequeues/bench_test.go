package azurequeues_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// The SDK's driver beside the bare azqueue client making the same calls
// (an enqueue per publish; a dequeue and a delete per message consumed)
// against the same Azurite. On an emulator the absolute rates mean little;
// the ratio does. Azurite's cost grows with the text it stores (JSON's
// quotes are escaped in the XML body), so the bare client runs twice: with
// the 256-byte body alone ("bare"), and with a text the size and shape of
// Kombu's envelope around it ("bare-envelope"), which is what the SDK
// adds on the wire.

// envelopeText is a Kombu envelope's size and shape around a 256-byte
// body.
var envelopeText = `{"body": "` + strings.Repeat("A", 344) + `", "content-encoding": "binary", "content-type": "application/data", "headers": {}, "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "bench"}, "delivery_mode": 2, "priority": 0, "delivery_tag": "9a5c1b0e-2f4e-4a58-9bd5-1f1fb7a1c0de"}}`

func benchEnv(b *testing.B) (transport.Conn, *azqueue.ServiceClient) {
	a := startAzurite(b)
	c := open(b, "azurestoragequeues://"+url.QueryEscape(devKey)+"@http://"+a.addr+"/"+devAccount+"?polling_interval=0.01")
	b.Cleanup(func() { _ = c.Close() })
	transporttest.DeclareQueue(b, c, transport.Queue{Name: "bench"})
	cred, _ := azqueue.NewSharedKeyCredential(devAccount, devKey)
	svc, err := azqueue.NewServiceClientWithSharedKeyCredential("http://"+a.addr+"/"+devAccount, cred, nil)
	if err != nil {
		b.Fatal(err)
	}
	q := svc.NewQueueClient("bare")
	defer func() { bareQueue = q }()
	if _, err := q.Create(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	// Warm Azurite (a Node process: its first thousand requests are
	// slower) so that the side measured first is not the one that pays.
	for range 1000 {
		if _, err := q.EnqueueMessage(context.Background(), envelopeText, nil); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := q.ClearMessages(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	return c, svc
}

// bareQueue is the bare client's queue of the current benchmark.
var bareQueue *azqueue.QueueClient

func BenchmarkPublish(b *testing.B) {
	c, q := benchEnv(b)
	bq := bareQueue
	ctx := context.Background()
	body := make([]byte, 256)
	b.Run("sdk", func(b *testing.B) {
		p := &transport.Publishing{RoutingKey: "bench", Body: body, Confirm: true}
		b.ReportAllocs()
		for range b.N {
			if err := c.Publish(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The envelope the SDK stored, byte for byte, for the bare client to
	// send the same text.
	peek, err := q.NewQueueClient("bench").PeekMessages(ctx, nil)
	if err != nil || len(peek.Messages) == 0 {
		b.Fatal(err)
	}
	stored := *peek.Messages[0].MessageText
	b.Logf("the SDK's envelope: %d bytes", len(stored))
	for _, bare := range []struct{ name, text string }{{"bare", string(body)}, {"bare-envelope", stored}} {
		b.Run(bare.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := bq.EnqueueMessage(ctx, bare.text, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConsumeAck(b *testing.B) {
	c, _ := benchEnv(b)
	q := bareQueue
	ctx := context.Background()
	body := make([]byte, 256)
	b.Run("sdk", func(b *testing.B) {
		p := &transport.Publishing{RoutingKey: "bench", Body: body}
		for range b.N {
			if err := c.Publish(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			d, err := c.Get(ctx, "bench", false)
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-envelope", func(b *testing.B) {
		for range b.N {
			if _, err := q.EnqueueMessage(ctx, envelopeText, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			resp, err := q.DequeueMessage(ctx, nil)
			if err != nil || len(resp.Messages) == 0 {
				b.Fatal(err)
			}
			m := resp.Messages[0]
			if _, err := q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
