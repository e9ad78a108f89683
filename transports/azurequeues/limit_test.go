package azurequeues_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// envelopeLen is the length of the message text the transport sends for
// p: Kombu's envelope, the body in base64, and a delivery tag (a UUID, 36
// characters, whatever its value).
func envelopeLen(t *testing.T, p *transport.Publishing) int {
	t.Helper()
	head, err := virtual.AppendEnvelopeHead(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return len(virtual.AppendEnvelopeTail(head, virtual.NewDeliveryTag()))
}

// The limit at its boundary, as Azure counts it (the message text's UTF-8
// bytes, the envelope with its base64 body): a publishing whose envelope
// is exactly 65536 bytes is sent and stored whole; one byte more is
// refused with ErrLimitExceeded by the transport before sending (Azurite,
// given such a text directly, refuses it too: the transport's limit is
// Azure's, neither stricter nor looser).
func TestLimitBoundary(t *testing.T) {
	a := startAzurite(t)
	c := open(t, a.url(""))
	defer c.Close()
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "limit"})

	// The body sets the size in steps of 4 (base64); the message id, a
	// plain ASCII string, makes up the rest to the byte.
	at := func(size int) *transport.Publishing {
		p := &transport.Publishing{RoutingKey: "limit", Body: make([]byte, 48000)}
		p.MessageID = "m"
		for i := range p.Body {
			p.Body[i] = byte(i)
		}
		p.MessageID = strings.Repeat("m", 1+size-envelopeLen(t, p))
		if n := envelopeLen(t, p); n != size {
			t.Fatalf("envelope of %d bytes, want %d", n, size)
		}
		return p
	}
	transporttest.Publish(t, c, at(65536))
	err := c.Publish(ctx, at(65537))
	if !errors.Is(err, codec.ErrLimitExceeded) || !strings.Contains(err.Error(), "65537 bytes") || !strings.Contains(err.Error(), "exceeds Azure's limit of 65536") {
		t.Fatalf("an envelope of 65537 bytes: %v, want the transport's own ErrLimitExceeded (before sending)", err)
	}

	cred, _ := azqueue.NewSharedKeyCredential(devAccount, devKey)
	svc, err := azqueue.NewServiceClientWithSharedKeyCredential("http://"+a.addr+"/"+devAccount, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := svc.NewQueueClient("limit")
	peek, err := q.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: to32(32)})
	if err != nil || len(peek.Messages) != 1 || len(*peek.Messages[0].MessageText) != 65536 {
		t.Fatalf("stored: %d messages (want one of 65536 bytes), %v", len(peek.Messages), err)
	}
	d, err := c.Get(ctx, "limit", true)
	if err != nil || len(d.Body) != 48000 || d.Body[47999] != byte(47999%256) {
		t.Fatalf("get the 65536-byte message: %v", err)
	}
	// Azurite's own limit, where the transport's check stands in front of
	// it: a text of 65536 bytes is taken, 65537 refused.
	if _, err := q.EnqueueMessage(ctx, strings.Repeat("x", 65536), nil); err != nil {
		t.Fatalf("Azurite refused 65536 bytes: %v", err)
	}
	if _, err := q.EnqueueMessage(ctx, strings.Repeat("x", 65537), nil); err == nil {
		t.Fatal("Azurite took 65537 bytes: the transport's limit would be too strict")
	}
}

func to32(n int32) *int32 { return &n }
