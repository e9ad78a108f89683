// Package kafka is kombu-go's Kafka transport, with the layout of Kombu's
// (kombu/transport/confluentkafka.py), on franz-go. Importing it registers
// the confluentkafka:// scheme, Kombu's, and kafka://:
//
//	import _ "github.com/kombu-go/kombu/transports/kafka"
//
//	conn, err := kombu.Dial(ctx, "confluentkafka://broker1:9092?brokers=broker2:9092,broker3:9092")
//
// The URL names one broker (port 9092 unless given), as Kombu's does; the
// brokers option adds seeds, so that any one of them answering is enough.
// A ";"-separated list works too, as a failover list. Open asks the
// cluster for its metadata within connection_wait_time_seconds (and ctx):
// a list none of whose brokers answers fails with ErrBrokersUnavailable.
//
// # The model
//
// Kafka keeps logs, not queues. Kombu makes a queue of a topic this way,
// and so does this package, so that Python Kombu and kombu-go share them:
//
//   - A queue is the topic of its name, without '@' (Kombu's
//     sanitize_queue_name: "celery@host" is the topic "celeryhost"),
//     made with num_partitions (1) and replication_factor (1) when the
//     queue is declared or first published to.
//   - A message is one record: Kombu's JSON envelope as the value, no key,
//     no headers, spread over the topic's partitions one record after the
//     other (as librdkafka spreads keyless records under Kombu). Publish returns once every in-sync replica has it
//     (acks=all, idempotent producer): Confirm is always honoured.
//   - A queue's consumers, in every process, are the members of the
//     consumer group "<queue>-consumer-group", which start from the
//     earliest offset and never auto-commit. Kafka gives each partition
//     to one member: a queue of one partition (Kombu's default) is
//     consumed by one connection at a time, and more partitions let more
//     consumers share it. The members use librdkafka's assignors (range,
//     roundrobin), so Python and Go members can share a group.
//   - Exchanges and bindings live in the connection's memory, as in
//     Kombu's virtual transport; direct and topic exchanges route to
//     queues, and Kafka never sees them. There is no fanout, priority or
//     TTL (Kombu has none on Kafka): they fail with ErrNotSupported.
//
// For example, one worker's queue spread over three partitions, so that
// three processes share it:
//
//	conn, err := kombu.Dial(ctx, "kafka://k1:9092?brokers=k2:9092,k3:9092&num_partitions=3&replication_factor=3")
//
// # Acknowledgements and commits
//
// Each connection fetches ahead, per queue, up to fetch_buffer records of
// the partitions its group member holds, and hands them out in offset
// order. An ack settles a record; the member commits, per partition, the
// offset of the oldest record not yet settled, so a record acked out of
// order is committed only once every earlier one is settled. Commits are
// made in the background, one at a time, at most every commit_interval
// (0.1 s), or sooner once commit_every (1000) records were settled since
// the last one, so that many acks share one commit (a commit per ack
// costs the brokers a round trip per message); and at once on close,
// when the queue is counted, and before a partition is given up in a
// rebalance. The redelivery window: a process that dies has the records
// it settled since its last commit delivered again (at least once), at
// most about commit_interval's or commit_every's worth plus the commit in
// flight, besides those it held unsettled.
//
// A reject with requeue hands the record out again, marked redelivered,
// before the records fetched after it; its partition's commit waits for
// it. A reject without requeue (a failed handler, a message the runtime
// cannot decode, a record that is not a Kombu envelope, which reaches the
// consumer's decode-error hook) writes the record, as it was, to the
// topic "<queue>.dlq", with the reason in the kombu_error header and the
// source in kombu_queue, kombu_partition and kombu_offset, and settles it
// only once that topic has it: no record is committed past unless it was
// acked or kept there. (Kombu's own reject without requeue commits the
// record and keeps nothing.) A queue declared with x-dead-letter-exchange
// dead-letters through that exchange instead, with x-death, as RabbitMQ.
//
// Kafka cannot rewrite a record to mark it redelivered. Each commit
// therefore carries, in the partition's commit metadata, the offsets past
// it that were handed to consumers; the member that gets the partition
// next (after a close, a rebalance, or a crash after that commit) delivers
// those marked redelivered.
//
// When the group rebalances (a member joins or leaves), a member commits
// what was settled in the partitions it gives up and forgets them: their
// records fetched and not handed out are dropped, and those handed out
// and not settled are the new owner's to deliver again. Their late acks
// and rejects commit nothing and dead-letter nothing here, so a record is
// never committed by two members, nor lost.
//
// # Counting and purging
//
// A queue's size is, over its partitions, the end offset less the group's
// committed offset (Kombu's _size), less what this connection holds
// unsettled. Purge deletes the topic's records up to its end (Kafka's
// DeleteRecords, for every group); DeleteQueue deletes the topic and the
// group's offsets.
//
// # Options
//
// Kombu's transport options, as query parameters:
// connection_wait_time_seconds (5), wait_time_seconds (5: how long a Get
// waits for records the brokers have and this member has not fetched),
// security_protocol (plaintext, ssl, sasl_plaintext, sasl_ssl; with
// Config.TLS for ssl), sasl_mechanism (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512, with the URL's user and password), num_partitions (1),
// replication_factor (1). Kombu's topic_config and kafka_*_config
// dictionaries configure librdkafka, which is not here: they are refused.
// This package's own: brokers (more seeds), polling_interval (1 s: how
// often an idle consumer looks, besides being woken by each fetch),
// max_record_bytes (1000000: a bigger envelope fails with
// ErrLimitExceeded before it is sent; keep it under the topic's
// max.message.bytes), fetch_buffer (512), commit_interval (0.1: seconds
// between background commits at most; 0 commits after every ack, as the
// commit in flight allows) and commit_every (1000 settled records commit
// without waiting for commit_interval).
//
// A topic name Kafka refuses (characters other than ASCII letters,
// digits, '.', '_' and '-', or longer than 249 bytes) fails with
// ErrNotSupported, naming it, before anything is sent.
//
// # Tests
//
// The tests run on kfake, franz-go's Kafka cluster in process, with three
// brokers, in the module transports/kafka/kafkatest (kfake needs a newer
// go line than this package). No Python peer runs there (Debian's Kombu
// has no confluent-kafka): the tests check the stored records against
// Kombu's source field by field instead.
package kafka
