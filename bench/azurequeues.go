package main

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	_ "github.com/kombu-go/kombu/transports/azurequeues"
	"github.com/kombu-go/kombu/transports/azurequeues/azuritetest"
)

// benchAzureQueues measures Azure Storage Queues on Azurite's queue
// service (npm's azurite 3.35), in memory, started as the transport's
// tests start it. The bare client is azqueue: EnqueueMessage of the base64
// body; DequeueMessages of up to 32 (as the transport's batch takes) and a
// DeleteMessage each. A second bare
// publisher ("bare twin") sends a text the size and shape of the SDK's
// envelope, with the SDK's message TTL (-1: never): Azurite's cost grows
// with the text it stores. No Python peer:
// Debian's Kombu lacks the Azure SDK.
func benchAzureQueues(ctx context.Context, tab *table) error {
	bin, err := azuritetest.Find()
	if err != nil {
		return err
	}
	port, err := azuritetest.FreePort()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kombu-go-bench-azurite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd, err := azuritetest.Launch(bin, port, dir, "--inMemoryPersistence")
	if err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port) + "/" + azuritetest.DevAccount
	cred, err := azqueue.NewSharedKeyCredential(azuritetest.DevAccount, azuritetest.DevKey)
	if err != nil {
		return err
	}
	svc, err := azqueue.NewServiceClientWithSharedKeyCredential(endpoint, cred, nil)
	if err != nil {
		return err
	}
	q := svc.NewQueueClient("kombu-go-bench-bare")
	if _, err := q.Create(ctx, nil); err != nil {
		return err
	}
	visibility := to.Ptr(int32(60))
	// The text the SDK stores for an order: Kombu's envelope around it.
	_, stored, err := orderEnvelope("")
	if err != nil {
		return err
	}
	envelope := string(stored)
	return benchEmulated(ctx, tab, emulated{
		url:       "azurestoragequeues://" + url.QueryEscape(azuritetest.DevKey) + "@" + endpoint + "?polling_interval=0.01&visibility_timeout=60",
		bareLabel: "azqueue",
		barePurge: func() error {
			_, err := q.ClearMessages(ctx, nil)
			return err
		},
		barePublish: func(count int) error {
			for range count {
				body, err := encode()
				if err != nil {
					return err
				}
				if _, err := q.EnqueueMessage(ctx, base64.StdEncoding.EncodeToString(body), nil); err != nil {
					return err
				}
			}
			return nil
		},
		bareEnvelope: func(count int) error {
			for range count {
				if _, err := encode(); err != nil {
					return err
				}
				if _, err := q.EnqueueMessage(ctx, envelope, &azqueue.EnqueueMessageOptions{TimeToLive: to.Ptr(int32(-1))}); err != nil {
					return err
				}
			}
			return nil
		},
		bareConsume: func(count int) error {
			// Dequeues of up to 32, as the transport's batch takes, and a
			// delete each, as its acks.
			for count > 0 {
				resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr(int32(min(count, 32))), VisibilityTimeout: visibility})
				if err != nil {
					return err
				}
				if len(resp.Messages) == 0 {
					return errors.New("the bare queue is empty")
				}
				for _, m := range resp.Messages {
					b, err := base64.StdEncoding.DecodeString(*m.MessageText)
					if err != nil {
						return err
					}
					if err := decode(b); err != nil {
						return err
					}
					if _, err := q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
						return err
					}
				}
				count -= len(resp.Messages)
			}
			return nil
		},
	})
}
