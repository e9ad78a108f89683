// Package gcpubsub is kombu-go's Google Cloud Pub/Sub transport, with Kombu
// 5.5's layout (kombu/transport/gcpubsub.py), through the official client,
// cloud.google.com/go/pubsub/v2. Importing it registers the gcpubsub://
// scheme:
//
//	import _ "github.com/kombu-go/kombu/transports/gcpubsub"
//
//	conn, err := kombu.Dial(ctx, "gcpubsub://projects/my-project")
//
// Credentials are Google's Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, the metadata server), as
// in Kombu; none go in the URL (one with a user or password is refused).
// Open finds them and gets a token within its context, so a missing or
// malformed credentials file, or a key the token service refuses, fails
// Dial with ErrCredentials (and kombu.ErrAccessRefused for a refusal),
// saying what is wrong and never showing the key. PUBSUB_EMULATOR_HOST,
// or the emulator_host option, points it at an emulator without
// credentials:
//
//	gcpubsub://projects/test?emulator_host=127.0.0.1:8085
//
// # Options
//
// Kombu's transport options, as query parameters: queue_name_prefix
// ("kombu-"), ack_deadline_seconds (240, from 10 to 600),
// expiration_seconds (86400), enable_exactly_once_delivery (false),
// ack_modify_batch_size (1000), polling_interval (0.1 s); and
// wait_time_seconds, retry_timeout_seconds and bulk_max_messages, which are
// accepted and have no use here (a take is an immediate pull).
//
// # Layout, as Kombu's
//
//   - An exchange is a topic with the exchange's name.
//   - A queue bound to a direct exchange is the subscription
//     <prefix><queue> (Kombu's entity_name: '.' to '-', other punctuation
//     to '_') on the exchange's topic, with the filter
//     attributes.routing_key="<key>", Kombu's ack deadline, expiration
//     policy and retention.
//   - A queue bound to a fanout exchange is a subscription of this
//     process, <prefix><queue>-<uuid3(NAMESPACE_OID, "host.pid")>, without
//     a filter and with 600 s retention, deleted when the process's last
//     connection closes: every consuming process gets every message.
//   - A message is Kombu's JSON envelope as the data, with the routing key
//     in the routing_key attribute (none through a fanout exchange).
//
// Python Kombu (5.5, with google-cloud-pubsub) therefore shares queues and
// exchanges with this package. No Python peer runs on the machines this
// was built on (Debian's Kombu has no Pub/Sub transport): the tests check
// the stored form field by field instead.
//
// # Acknowledgements
//
// A take is an immediate pull of as many messages as the consumer's
// prefetch has room for (one without a prefetch); ack is Acknowledge; a requeue or a
// connection's close nacks (ModifyAckDeadline 0), and Pub/Sub delivers the
// message again; a process that dies leaves its messages to come back
// after the ack deadline. While a message is unsettled its deadline is
// pushed back every quarter of it (Kombu's extender thread), so a long
// handler keeps it. Pub/Sub cannot rewrite a message, so a message put
// back after delivery is marked redelivered by this process's memory, or
// from Pub/Sub's delivery attempt where the subscription has a dead-letter
// policy.
//
// # Deviations from Kombu, and what is not here
//
//   - Topic and headers exchanges, priorities, TTL and mandatory
//     publishing are refused with ErrNotSupported (Kombu raises
//     NotImplementedError for the exchange types and has the rest
//     nowhere).
//   - Dead-lettering (beyond Kombu, which has none on Pub/Sub), with
//     RabbitMQ's queue arguments. With x-dead-letter-exchange alone: a
//     message rejected without requeue
//     is published to that exchange's topic with an x-death record, as
//     RabbitMQ does, then acknowledged (the virtual transport's
//     emulation). Pub/Sub has no call that dead-letters one message: its
//     dead-letter topics act only after a number of delivery attempts.
//   - Dead-lettering with x-dead-letter-exchange and x-delivery-limit (a quorum queue's
//     argument: a message delivered and returned more than that many
//     times is dead-lettered): the queue's subscription gets Pub/Sub's
//     own dead-letter policy, dead_letter_topic the exchange's topic
//     (projects/<project>/topics/<exchange>, made if missing) and
//     max_delivery_attempts the limit plus one. Pub/Sub then forwards a
//     message requeued, or left to its ack deadline, that many times, as
//     it is: with its own routing_key attribute, so the dead-letter
//     exchange's queues bound with that key get it, and without x-death
//     (the service adds its CloudPubSubDeadLetter* attributes instead).
//     Rejection without requeue still goes the emulation's way at once.
//     Pub/Sub counts every pull, Size's included, as an attempt. The
//     policy is refused with ErrNotSupported where Pub/Sub cannot follow
//     RabbitMQ: a limit outside 4 to 99 (Pub/Sub takes 5 to 100
//     attempts), no dead-letter exchange or the default exchange (the
//     policy names one topic), or x-dead-letter-routing-key (Pub/Sub
//     cannot change the message's attributes). A subscription made again
//     by a binding keeps the policy. Tested on pstest, which implements
//     dead_letter_policy but forwards the message again at every later
//     pull (its pull acknowledges it by message id where it wants the ack
//     id): Pub/Sub forwards it once.
//   - Order: Pub/Sub without ordering keys keeps none, and neither does
//     this transport.
//   - The default exchange: Kombu's queues exist only once bound; here a
//     queue declared before any binding gets a topic of its own, named as
//     its subscription, so publishing to the queue by name works. Binding
//     it later moves the subscription to the exchange's topic, which
//     Pub/Sub allows only by deleting and making it again: only while the
//     queue holds no message (ErrNotSupported otherwise). A second
//     routing key on the same exchange is added to the filter the same
//     way (filter: key1 OR key2); Kombu overwrites the filter instead.
//   - A message published to a queue by name goes to its subscription's
//     topic with the key of its filter: another queue bound to the same
//     exchange with the same key gets a copy too, as in Kombu.
//   - Size (a passive declaration's message count) pulls the ready
//     messages and gives them back at once, since Pub/Sub has no count
//     (Kombu asks Cloud Monitoring, and answers -1 on the emulator).
//     Purge acknowledges the ready messages (Kombu seeks to now, which
//     also drops the unsettled ones).
//   - Deleting an exchange deletes its topic (Kombu never does) after
//     moving the subscriptions of its queues, its bindings, to topics of
//     their own; a subscription that holds messages cannot move, so the
//     topic stays for it and this process refuses publishes through the
//     exchange until it is declared again, while other processes'
//     publishes still reach that queue.
//   - A body whose envelope exceeds Pub/Sub's 10 MB is refused before
//     sending with kombu.ErrLimitExceeded. A PublishBatch sends each
//     exchange's messages in requests within Pub/Sub's limits (1000
//     messages and 10 MB a request); a message over the limit fails alone
//     in a *kombu.BatchError, the others delivered.
//
// Tested against pstest (cloud.google.com/go/pubsub/v2/pstest), the fake
// server from the client's authors, in process.
package gcpubsub
