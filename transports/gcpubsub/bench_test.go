package gcpubsub_test

import (
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// The SDK's driver beside the bare pubsub client making the same calls (a
// Publish request per message; a Pull of one and an Acknowledge per
// message consumed) against the same pstest server. On a fake the
// absolute rates mean little; the ratio does.

func benchEnv(b *testing.B) (transport.Conn, *pubsub.Client) {
	_, addr := startServer(b)
	c := open(b, addr, "&polling_interval=0.01")
	b.Cleanup(func() { _ = c.Close() })
	transporttest.DeclareExchange(b, c, transport.Exchange{Name: "bx", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(b, c, transport.Queue{Name: "bench"})
	transporttest.Bind(b, c, transport.Binding{Source: "bx", Destination: "bench", RoutingKey: "k"})
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, "kombu-test", option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/kombu-test/topics/bare"}); err != nil {
		b.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/kombu-test/subscriptions/bare", Topic: "projects/kombu-test/topics/bare", AckDeadlineSeconds: 60,
	}); err != nil {
		b.Fatal(err)
	}
	return c, client
}

func barePublish(ctx context.Context, client *pubsub.Client, body []byte) error {
	_, err := client.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{
		Topic: "projects/kombu-test/topics/bare", Messages: []*pubsubpb.PubsubMessage{{Data: body, Attributes: map[string]string{"routing_key": "k"}}},
	})
	return err
}

func BenchmarkPublish(b *testing.B) {
	c, client := benchEnv(b)
	ctx := context.Background()
	body := make([]byte, 256)
	b.Run("sdk", func(b *testing.B) {
		p := &transport.Publishing{Exchange: "bx", RoutingKey: "k", Body: body, Confirm: true}
		b.ReportAllocs()
		for range b.N {
			if err := c.Publish(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := barePublish(ctx, client, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkConsumeAck(b *testing.B) {
	c, client := benchEnv(b)
	ctx := context.Background()
	body := make([]byte, 256)
	b.Run("sdk", func(b *testing.B) {
		p := &transport.Publishing{Exchange: "bx", RoutingKey: "k", Body: body}
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
	b.Run("bare", func(b *testing.B) {
		for range b.N {
			if err := barePublish(ctx, client, body); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			//lint:ignore SA1019 the same call the driver makes
			resp, err := client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: "projects/kombu-test/subscriptions/bare", MaxMessages: 1, ReturnImmediately: true})
			if err != nil || len(resp.ReceivedMessages) == 0 {
				b.Fatal(err)
			}
			if err := client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
				Subscription: "projects/kombu-test/subscriptions/bare", AckIds: []string{resp.ReceivedMessages[0].AckId},
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
