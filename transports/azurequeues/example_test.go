package azurequeues_test

import (
	"context"
	"fmt"
	"net/url"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/azurequeues"
)

// Publish to a queue on Azurite (the emulator, with its well-known
// development account and key) and take the message back with Get, then
// acknowledge it: the acknowledgement deletes the message from Azure.
// (Compiled, not run: it needs an emulator on port 10001; TestSimpleQueue
// and TestConformance make the same calls against the Azurite they start.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Kombu's form: the account key, percent-encoded (it holds '/' and
	// '='), before '@', the account's URL after it.
	key := url.QueryEscape("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
	conn, err := kombu.Dial(ctx, "azurestoragequeues://"+key+"@http://127.0.0.1:10001/devstoreaccount1?polling_interval=0.1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	fmt.Println(conn.URL()) // the key is shown as "**"

	// The Azure queue is Kombu's entity name: "example-hello".
	q := kombu.Queue{Name: "example.hello"}
	if _, err := q.Declare(ctx, conn); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _, _ = q.Delete(ctx, conn) }()
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]string{"hello": "azure"}, kombu.WithRoutingKey(q.Name)); err != nil {
		fmt.Println(err)
		return
	}
	msg, err := q.Get(ctx, conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	var body map[string]string
	if err := msg.Decode(&body); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(body["hello"]) // azure
	// The acknowledgement deletes the message from the Azure queue.
	if err := msg.Ack(); err != nil {
		fmt.Println(err)
	}
}

// Consume with a Consumer: each message is taken with a visibility timeout
// that the transport extends while the handler runs, and deleted when the
// handler returns nil. (Compiled, not run: it needs an emulator.)
func Example_consume() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := url.QueryEscape("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
	conn, err := kombu.Dial(ctx, "azurestoragequeues://"+key+"@http://127.0.0.1:10001/devstoreaccount1?polling_interval=0.1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	if err := kombu.NewProducer(conn).Publish(ctx, "task-1", kombu.WithRoutingKey("tasks")); err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	handler := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		fmt.Printf("handled %s\n", msg.Body)
		stop() // one message is enough here
		return nil
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "tasks"}, Handler: handler}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Run returned", consumer.Run(runCtx))
}

// The URL forms the transport takes, and its options. (Compiled, not run:
// each Dial needs the account to answer.)
func Example_urls() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, raw := range []string{
		// Kombu's form: an account key (percent-encode '/' as %2F, '+' as
		// %2B and '=' as %3D) or a SAS token, then the account's URL.
		"azurestoragequeues://<account key>@https://myaccount.queue.core.windows.net/",
		"azurestoragequeues://<SAS token: sv=...&sig=...>@https://myaccount.queue.core.windows.net/",
		// The short form: the key as the password, the account as the host.
		"azurestoragequeues://:<account key>@myaccount",
		// An emulator: host and port, the account as the path (over http).
		"azurestoragequeues://:<account key>@127.0.0.1:10001/devstoreaccount1",
		// Kombu's transport options: a prefix for every queue name, how
		// long a taken message stays invisible (in seconds, extended while
		// it is unsettled), and how often an idle consumer polls.
		"azurestoragequeues://:<account key>@myaccount?queue_name_prefix=myapp-&visibility_timeout=60&polling_interval=0.5",
	} {
		conn, err := kombu.Dial(ctx, raw)
		if err != nil {
			fmt.Println(err) // never shows the key
			continue
		}
		fmt.Println(conn.URL())
		_ = conn.Close()
	}
}
