// Package azurequeues is kombu-go's Azure Storage Queues transport, with
// Kombu's layout (kombu/transport/azurestoragequeues.py), through the
// official client, github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue.
// Importing it registers the azurestoragequeues:// scheme:
//
//	import _ "github.com/kombu-go/kombu/transports/azurequeues"
//
//	// Kombu's form: the account key (or a SAS token) before '@', the
//	// account's URL after it. Percent-encode '/' in the key as %2F.
//	conn, err := kombu.Dial(ctx, "azurestoragequeues://<key>@https://myaccount.queue.core.windows.net/")
//
//	// The short form: the key as the password, the account as the host.
//	conn, err := kombu.Dial(ctx, "azurestoragequeues://:<key>@myaccount")
//
//	// Azurite, the emulator, on its well-known account.
//	conn, err := kombu.Dial(ctx, "azurestoragequeues://<key>@http://127.0.0.1:10001/devstoreaccount1")
//
// The key never appears in errors, logs or URL(): it is shown as "**", as
// Kombu's as_uri does. Kombu's DefaultAzureCredential and
// ManagedIdentityCredential forms are refused with ErrNotSupported (they
// need azidentity, which this module does not import).
//
// # Options
//
// queue_name_prefix (Kombu's, ""), visibility_timeout (30 s: how long a
// taken message stays invisible before the store extends it) and
// polling_interval (Kombu's, 1 s).
//
// # Layout, as Kombu's
//
// A queue is the Azure queue named <prefix><queue> with every ASCII
// punctuation character turned into '-' (Kombu's entity_name); a message
// is Kombu's JSON envelope as the message text, so Python Kombu (with
// azure-storage-queue) reads and writes the same queues. A name that
// mapping leaves invalid for Azure (capitals, more than 63 characters, two
// hyphens in a row), which Kombu fails to create, is lowercased, its
// hyphens collapsed, and cut to 54 characters with a hash of the whole.
// Exchanges and bindings live in the memory of this process, shared by its
// connections, as Kombu's virtual transport keeps them in its own: direct,
// topic and fanout routing, and dead-lettering, are the virtual
// transport's.
//
// # Acknowledgements: a deviation from Kombu
//
// Kombu deletes a message as it receives it, so a worker that dies loses
// what it held. This package acknowledges properly: a take dequeues the
// message (up to 32 at once, as the consumer's prefetch has room) with a
// visibility timeout, which is extended a third of the way
// through while the message is unsettled (a long handler keeps its
// message); ack deletes it; a requeue or a connection's close rewrites it
// (marked redelivered when it was delivered) and makes it visible at once;
// a process that dies leaves its messages to come back when their
// visibility timeout ends, marked redelivered from Azure's dequeue count.
//
// # Limits
//
// Size counts the visible messages by peeking (exact up to 32; beyond, the
// approximate count less this connection's taken messages). Purge deletes
// the visible messages only (Kombu clears the queue, unsettled ones too).
// An envelope over Azure's 64 KiB is refused before sending with
// kombu.ErrLimitExceeded. Messages never expire (Azure's default is seven
// days). Priorities and TTL are refused with ErrNotSupported.
//
// Tested against Azurite 3.35 (npm), started by the tests.
package azurequeues
