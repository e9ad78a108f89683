package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/transports/sqs"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
)

// benchSQS measures SQS on goaws, run in this process as the transport's
// tests run it. The bare client is aws-sdk-go-v2's SQS client (the version
// the transport pins, which speaks goaws's query protocol): SendMessage of
// the base64 body; ReceiveMessage of up to ten messages, as the
// transport's batch takes receive, and one DeleteMessageBatch for their
// acks, as the transport's batched acks send them.
//
// Both clients send their request bodies through sqs.WholeBodies, as the
// transport does: without it smithy-go empties a request's body once the
// response's headers arrive, and goaws answering in process before the
// HTTP write loop was done with it made one request in a few thousand
// fail with "use of closed network connection" (aws-sdk-go-v2 issue
// 2737), which stopped full-size runs.
func benchSQS(ctx context.Context, tab *table) error {
	g, err := sqstest.Start(30, sqs.MaxMessageSize)
	if err != nil {
		return err
	}
	const key, secret = "AKIDTEST", "s3cr3t/key"
	client := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		BaseEndpoint: aws.String("http://" + g.Addr()),
		HTTPClient:   sqs.WholeBodies(awshttp.NewBuildableClient()),
	})
	out, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("kombu-go-bench-bare")})
	if err != nil {
		return err
	}
	qurl := out.QueueUrl
	defer client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: qurl})
	e := emulated{
		url:       "sqs://" + key + ":s3cr3t%2Fkey@" + g.Addr() + "?region=us-east-1&emulator=goaws&polling_interval=0.05&visibility_timeout=30",
		bareLabel: "aws-sdk-go-v2 sqs",
		barePurge: func() error {
			_, err := client.PurgeQueue(ctx, &awssqs.PurgeQueueInput{QueueUrl: qurl})
			return err
		},
		barePublish: func(count int) error {
			for range count {
				body, err := encode()
				if err != nil {
					return err
				}
				if _, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: qurl, MessageBody: aws.String(base64.StdEncoding.EncodeToString(body))}); err != nil {
					return err
				}
			}
			return nil
		},
		bareConsume: func(count int) error {
			for count > 0 {
				r, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: qurl, MaxNumberOfMessages: int32(min(count, 10)), VisibilityTimeout: 30,
					AttributeNames: []types.QueueAttributeName{"ApproximateReceiveCount"}})
				if err != nil {
					return err
				}
				if len(r.Messages) == 0 {
					return errors.New("the bare queue is empty")
				}
				entries := make([]types.DeleteMessageBatchRequestEntry, len(r.Messages))
				for i, m := range r.Messages {
					b, err := base64.StdEncoding.DecodeString(aws.ToString(m.Body))
					if err != nil {
						return err
					}
					if err := decode(b); err != nil {
						return err
					}
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				// The acks, as the transport sends them: one
				// DeleteMessageBatch for the receive's messages.
				del, err := client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: qurl, Entries: entries})
				if err != nil {
					return err
				}
				if len(del.Successful) != len(entries) {
					return fmt.Errorf("DeleteMessageBatch deleted %d of %d", len(del.Successful), len(entries))
				}
				count -= len(r.Messages)
			}
			return nil
		},
		pyURL:     "sqs://" + key + ":s3cr3t%2Fkey@" + g.Addr(),
		pyOpts:    `{"region": "us-east-1", "wait_time_seconds": 1, "polling_interval": 0.05, "visibility_timeout": 30}`,
		pyLabel:   "boto3+pycurl",
		pyImports: "kombu.transport.SQS, boto3, pycurl",
	}
	if err := benchEmulated(ctx, tab, e); err != nil {
		return err
	}
	return benchSQSBatched(ctx, tab, e, client, qurl)
}

// benchSQSBatched sets kombu.Batch (a connection's PublishBatch) beside
// the bare client's SendMessageBatch of ten, SQS's most. Python Kombu has
// no batched publish.
func benchSQSBatched(ctx context.Context, tab *table, e emulated, client *awssqs.Client, qurl *string) error {
	s, err := e.dial(ctx, sdkDefaults)
	if err != nil {
		return err
	}
	defer s.conn.Close()
	defer kombu.Queue{Name: benchQueue}.Delete(ctx, s.conn)
	n := max(tab.cfg.n/emuScale, 2*emuChunk)
	// The bare twin sends Kombu's envelope as the SDK stores it (base64,
	// 636 bytes where the order alone is 136): what the wire format costs
	// goaws and the SDK's serializing, signing and checksums.
	_, envelope, err := orderEnvelope("binary")
	if err != nil {
		return err
	}
	envelopeBody := base64.StdEncoding.EncodeToString(envelope)
	sendBatches := func(body func() (string, error)) run {
		return func(count int) error {
			for count > 0 {
				k := min(count, 10)
				entries := make([]types.SendMessageBatchRequestEntry, k)
				for i := range entries {
					b, err := body()
					if err != nil {
						return err
					}
					entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b)}
				}
				out, err := client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: qurl, Entries: entries})
				if err != nil {
					return err
				}
				if len(out.Failed) > 0 {
					return fmt.Errorf("SendMessageBatch: %d of %d failed", len(out.Failed), k)
				}
				count -= k
			}
			return nil
		}
	}
	return tab.add(workload{
		name: "publish, batched", n: n, chunk: emuChunk, // a turn: one kombu.Batch of emuChunk
		setup: only(func() error { return errors.Join(s.purge(ctx), e.barePurge()) }),
		sides: []side{
			{sdkDefaults, "kombu.Batch", s.batched(ctx)},
			{bare, "SendMessageBatch of 10", sendBatches(func() (string, error) {
				body, err := encode()
				return base64.StdEncoding.EncodeToString(body), err
			})},
			{bareTwin, "SendMessageBatch of 10, the SDK's envelope as the body", sendBatches(func() (string, error) {
				_, err := encode()
				return envelopeBody, err
			})},
		},
		note: "the virtual connection's PublishBatch stores the batch through the store's PutBatch: SendMessageBatch of up to ten, as the bare side",
	})
}
