package amqp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Request/reply through the runtime uses RabbitMQ's direct reply-to: no
// reply queue is declared, and the broker rewrites reply_to into the
// requesting channel's private address.
func TestCallUsesDirectReplyTo(t *testing.T) {
	url := brokertest.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queue := kombu.Queue{Name: "kombu-go-test.rpc." + strings.ReplaceAll(t.Name(), "/", "_"), AutoDelete: true}
	seenReplyTo := make(chan string, 1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queue, Handler: kombu.Replying(
		func(_ context.Context, n *wrapperspb.Int64Value, msg *kombu.Message) (*wrapperspb.Int64Value, error) {
			select {
			case seenReplyTo <- msg.Properties.ReplyTo:
			default:
			}
			return wrapperspb.Int64(n.Value + 1), nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	defer c.Close()

	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name), kombu.WithSerializer("protobuf"))
	for i := range 20 {
		var out wrapperspb.Int64Value
		if err := p.Call(ctx, wrapperspb.Int64(int64(i)), &out); err != nil || out.Value != int64(i+1) {
			t.Fatalf("call %d: %d, %v", i, out.Value, err)
		}
	}
	if rt := <-seenReplyTo; !strings.HasPrefix(rt, kombu.DirectReplyTo+".") {
		t.Fatalf("the request's reply_to is %q, want RabbitMQ's rewritten %s.<id>", rt, kombu.DirectReplyTo)
	}
}
