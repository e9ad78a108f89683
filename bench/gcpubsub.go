package main

import (
	"context"
	"errors"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/kombu-go/kombu/transports/gcpubsub"
)

// benchPubSub measures Google Pub/Sub on pstest, the fake server the
// client's authors ship, in this process, as the transport's tests run
// it. The transport has no topic exchanges: the SDK's sides publish to a
// direct exchange (see emulated.direct). The bare client is the pubsub
// client's generated API, as the transport calls it: a Publish request of
// one message with the routing_key attribute; a Pull of up to 100 (the
// tuned prefetch, as the transport's batch takes; ReturnImmediately) and
// an Acknowledge per message consumed. No Python
// peer: Debian's Kombu has no Pub/Sub transport.
func benchPubSub(ctx context.Context, tab *table) error {
	srv := pstest.NewServer()
	defer srv.Close()
	const project = "kombu-go-bench"
	client, err := pubsub.NewClient(ctx, project, option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return err
	}
	defer client.Close()
	topic, sub := "projects/"+project+"/topics/bare", "projects/"+project+"/subscriptions/bare"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		return err
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		return err
	}
	pull := func(max int32) ([]*pubsubpb.ReceivedMessage, error) {
		//lint:ignore SA1019 the call the transport makes
		resp, err := client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: max, ReturnImmediately: true})
		if err != nil {
			return nil, err
		}
		return resp.ReceivedMessages, nil
	}
	ack := func(ids ...string) error {
		return client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids})
	}
	return benchEmulated(ctx, tab, emulated{
		url:       "gcpubsub://projects/" + project + "?emulator_host=" + srv.Addr + "&polling_interval=0.01",
		direct:    true,
		bareLabel: "pubsub apiv1",
		barePurge: func() error {
			for {
				ms, err := pull(1000)
				if err != nil || len(ms) == 0 {
					return err
				}
				ids := make([]string, len(ms))
				for i, m := range ms {
					ids[i] = m.AckId
				}
				if err := ack(ids...); err != nil {
					return err
				}
			}
		},
		barePublish: func(count int) error {
			for range count {
				body, err := encode()
				if err != nil {
					return err
				}
				if _, err := client.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic,
					Messages: []*pubsubpb.PubsubMessage{{Data: body, Attributes: map[string]string{"routing_key": benchRoutingKey}}}}); err != nil {
					return err
				}
			}
			return nil
		},
		bareConsume: func(count int) error {
			// Pulls of up to the tuned prefetch, as the transport's batch
			// takes, and an acknowledge each, as its acks.
			for count > 0 {
				ms, err := pull(int32(min(count, tunedPrefetch)))
				if err != nil {
					return err
				}
				if len(ms) == 0 {
					return errors.New("the bare subscription is empty")
				}
				for _, m := range ms {
					if err := decode(m.Message.Data); err != nil {
						return err
					}
					if err := ack(m.AckId); err != nil {
						return err
					}
				}
				count -= len(ms)
			}
			return nil
		},
	})
}
