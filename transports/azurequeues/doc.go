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
// The key or SAS token never appears in errors, logs or URL(): it is shown
// as "**", as Kombu's as_uri does (a SAS signature in a request URL that an
// error quotes is replaced by "**" too). Kombu's DefaultAzureCredential and
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
// azure-storage-queue) reads and writes the same queues. Exchanges and
// bindings live in the memory of this process, shared by its connections,
// as Kombu's virtual transport keeps them in its own: direct, topic and
// fanout routing, and dead-lettering, are the virtual transport's.
//
// # Deviations from Kombu
//
// Queue names are rewritten, not refused. Azure takes 3 to 63 lowercase
// letters, digits and single hyphens. Kombu sends the name its mapping
// gives and fails where Azure refuses it; this package instead rewrites
// such a name: lowercased, every other character (non-ASCII ones too)
// turned into a hyphen, hyphens collapsed and trimmed, and, when the
// result is shorter than 3 or longer than 63 characters, cut to 54
// characters and given '-' and 8 hex digits of the SHA-1 of the whole
// name. So no name is refused, and names that differ only in case or in
// runs of punctuation ("Jobs" and "jobs", "a..b" and "a.b") share one
// Azure queue. A name valid under Kombu's mapping is left as Kombu's.
//
// Acknowledgements. Kombu deletes a message as it receives it, so a worker
// that dies loses what it held. This package acknowledges properly: a take
// dequeues the message (up to 32 at once, as the consumer's prefetch has
// room) with a visibility timeout, which is extended a third of the way
// through while the message is unsettled (a long handler keeps its
// message); ack deletes it; a requeue or a connection's close rewrites it
// (marked redelivered when it was delivered) and makes it visible at once;
// a process that dies leaves its messages to come back when their
// visibility timeout ends, marked redelivered from Azure's dequeue count.
//
// Purge deletes the visible messages only (by dequeuing and deleting them,
// 32 at a time); messages taken and not settled, by any consumer, stay
// (Kombu clears the queue, which deletes them too).
//
// Size is exact only up to 32 visible messages (counted by peeking);
// beyond that it is Azure's approximate message count, which includes the
// messages other connections hold invisible, less the ones this connection
// holds.
//
// Messages never expire: they are sent with a time-to-live of -1 (Kombu
// sends none, so Azure's default of seven days applies there).
//
// # Limits
//
// An envelope over Azure's 64 KiB (65536 bytes of message text: the
// envelope with its base64 body) is refused before sending with
// kombu.ErrLimitExceeded; one of exactly 65536 bytes is sent.
// Priorities and per-message TTL are refused with ErrNotSupported.
//
// Tested against Azurite 3.35 (npm), started by the tests.
package azurequeues
