package azurequeues_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/azurequeues"
)

func TestURLs(t *testing.T) {
	for _, raw := range []string{
		"azurestoragequeues://",
		"azurestoragequeues://account",
		"azurestoragequeues://user:s3cretkey@account",
		"azurestoragequeues://:s3cretkey@account?bogus=1",
		"azurestoragequeues://s3cretkey@http://127.0.0.1:10001/devstoreaccount1?visibility_timeout=0",
	} {
		u, err := transport.Parse(raw)
		if err == nil {
			_, err = azurequeues.Driver{}.Open(context.Background(), u, transport.Config{})
		}
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the key: %v", raw, err)
		}
	}
	u, _ := transport.Parse("azurestoragequeues://DefaultAzureCredential@https://acc.queue.core.windows.net/")
	if _, err := (azurequeues.Driver{}).Open(context.Background(), u, transport.Config{}); !errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("DefaultAzureCredential: %v, want ErrNotSupported", err)
	}
}

// A key that is not base64, and a key the account refuses, fail Open with
// ErrCredentials and never show the key; an endpoint that does not answer
// fails within the context.
func TestCredentials(t *testing.T) {
	a := startAzurite(t)
	for _, key := range []string{"not*base64*s3cret", "czNjcmV0czNjcmV0czNjcmV0"} {
		u, err := transport.Parse("azurestoragequeues://" + url.QueryEscape(key) + "@http://" + a.addr + "/" + devAccount)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err = azurequeues.Driver{}.Open(ctx, u, transport.Config{})
		cancel()
		if !errors.Is(err, azurequeues.ErrCredentials) {
			t.Errorf("key %q: %v, want ErrCredentials", key, err)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "czNjcmV0")) {
			t.Errorf("the error shows the key: %v", err)
		}
	}
	u, _ := transport.Parse("azurestoragequeues://" + url.QueryEscape(devKey) + "@http://127.0.0.1:1/" + devAccount)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := (azurequeues.Driver{}).Open(ctx, u, transport.Config{}); err == nil || time.Since(start) > 15*time.Second {
		t.Fatalf("Open against nothing: %v after %v", err, time.Since(start))
	}
}

// Kombu's layout: the queue named as Kombu's entity_name, the envelope as
// the message text; a message Python Kombu enqueued is read; a foreign one
// is delivered undecodable; a body above 64 KiB is refused before sending.
func TestLayout(t *testing.T) {
	a := startAzurite(t)
	c := open(t, a.url(""))
	defer c.Close()
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "celery.high"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "celery.high", Body: []byte("hello")})

	cred, _ := azqueue.NewSharedKeyCredential(devAccount, devKey)
	svc, err := azqueue.NewServiceClientWithSharedKeyCredential("http://"+a.addr+"/"+devAccount, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := svc.NewQueueClient("celery-high") // Kombu: punctuation to '-'
	peek, err := q.PeekMessages(ctx, nil)
	if err != nil || len(peek.Messages) != 1 {
		t.Fatalf("peek Kombu's queue celery-high: %v, %v", peek, err)
	}
	d, err := virtual.DecodeEnvelope([]byte(*peek.Messages[0].MessageText))
	if err != nil || string(d.Body) != "hello" || d.RoutingKey != "celery.high" {
		t.Fatalf("stored %s: %+v, %v", *peek.Messages[0].MessageText, d, err)
	}
	got, err := c.Get(ctx, "celery.high", true)
	if err != nil || string(got.Body) != "hello" {
		t.Fatalf("get: %v, %v", got, err)
	}

	py := `{"body": "aGk=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "celery.high"}, "delivery_mode": 2, "priority": 0, "delivery_tag": "9a5c1b0e-2f4e-4a58-9bd5-1f1fb7a1c0de"}}`
	if _, err := q.EnqueueMessage(ctx, py, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.EnqueueMessage(ctx, "not json", nil); err != nil {
		t.Fatal(err)
	}
	d1, err := c.Get(ctx, "celery.high", true)
	if err != nil || string(d1.Body) != "hi" {
		t.Fatalf("Python's message: %+v, %v", d1, err)
	}
	d2, err := c.Get(ctx, "celery.high", true)
	if err != nil || d2.Properties.ContentType != virtual.InvalidEnvelopeType || string(d2.Body) != "not json" {
		t.Fatalf("a foreign message: %+v, %v", d2, err)
	}

	err = c.Publish(ctx, &transport.Publishing{RoutingKey: "celery.high", Body: make([]byte, 60<<10)})
	if !errors.Is(err, codec.ErrLimitExceeded) {
		t.Fatalf("60 KiB (over 64 KiB in base64): %v, want ErrLimitExceeded", err)
	}
	// A name Kombu's mapping leaves invalid for Azure is made valid.
	long := strings.Repeat("Queue.Name_", 10)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: long})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: long, Body: []byte("x")})
	if d, err := c.Get(ctx, long, true); err != nil || string(d.Body) != "x" {
		t.Fatalf("long name: %v, %v", d, err)
	}
}

// A handler that runs past the visibility timeout keeps its message: the
// store extends it, so no second consumer gets it.
func TestLongHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4 s")
	}
	a := startAzurite(t)
	c1 := open(t, a.url("?visibility_timeout=1.5&polling_interval=0.05"))
	defer c1.Close()
	c2 := open(t, a.url("?visibility_timeout=1.5&polling_interval=0.05"))
	defer c2.Close()
	transporttest.DeclareQueue(t, c1, transport.Queue{Name: "long"})
	transporttest.Publish(t, c1, &transport.Publishing{RoutingKey: "long", Body: []byte("slow")})
	d, err := c1.Get(context.Background(), "long", false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if d2, err := c2.Get(context.Background(), "long", false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a second consumer got the message held by the first: %v, %v", d2, err)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatalf("ack after 4 s: %v", err)
	}
}
