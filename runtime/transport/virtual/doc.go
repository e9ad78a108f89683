// Package virtual is Kombu's virtual transport (kombu/transport/virtual:
// base.py, exchange.py) for kombu-go's drivers: what every broker but
// RabbitMQ is built on in Kombu, written once. It imports only the standard
// library and package transport.
//
// It has two layers.
//
// The first is Kombu's format, for every driver that stores messages as
// Kombu's virtual transports do (Redis, the filesystem, SQL, SQS, ...):
//
//   - the envelope, the JSON object Kombu stores for each message, written
//     byte for byte as Python's json.dumps writes it (AppendEnvelopeHead,
//     AppendEnvelopeTail, NewDeliveryTag) and read as leniently as Python
//     Kombu 5.2 to 5.5 write it (DecodeEnvelope), with Kombu's redelivery
//     mark (MarkRedelivered) and priority (Priority);
//   - Python's JSON values (AppendPyString, AppendPyValue) and Python's
//     time format (AppendISOTime), once;
//   - topic exchanges as Kombu matches them, with Python regular
//     expressions stored beside each binding (KeyToPattern, MatchPattern),
//     and the routing table of direct, topic and fanout exchanges
//     (Binding, Routes);
//   - RabbitMQ's x-death record, for transports that dead-letter messages
//     themselves (WithDeath, DeathTimes);
//   - what Kombu keeps in a connection's memory and what a virtual queue
//     and consumer take: exchange declarations (Exchanges), queue arguments
//     (QueueArguments, DeadLetter) and consumer specs (CheckConsumeSpec).
//
// The second is a whole transport.Conn over a Store: a driver implements
// its storage primitives (put, take, ack, restore, purge, size, a binding
// store) and NewConn gives it Kombu's exchanges, routing, envelopes,
// consumers, settlement and emulated dead-lettering (see Store and
// NewConn).
package virtual
