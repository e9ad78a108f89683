package kafka

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

func TestTrackerCommitsInOrder(t *testing.T) {
	tr := newTracker()
	if got := tr.commitPoint(); got != -1 {
		t.Fatalf("empty tracker commits %d", got)
	}
	for off := int64(10); off < 15; off++ {
		tr.handOut(off)
	}
	tr.handOut(11) // handed out again after a restore: still pending
	steps := []struct {
		settle int64
		want   int64
	}{{12, 10}, {14, 10}, {10, 11}, {11, 13}, {13, 15}}
	for _, s := range steps {
		if !tr.settle(s.settle) {
			t.Fatalf("settle %d: not pending", s.settle)
		}
		if got := tr.commitPoint(); got != s.want {
			t.Fatalf("after settling %d: commit point %d, want %d", s.settle, got, s.want)
		}
	}
	if tr.settle(13) || tr.settle(99) {
		t.Fatal("settled an offset twice, or one never handed out")
	}
	if tr.unsettled() != 0 {
		t.Fatalf("unsettled %d", tr.unsettled())
	}
}

func TestDeliveredMetadata(t *testing.T) {
	offs := []int64{3, 4, 5, 7, 9, 10}
	meta := encodeDelivered(offs)
	if meta != "kombu-delivered:3-5,7,9-10" {
		t.Fatalf("meta %q", meta)
	}
	spans := decodeDelivered(meta)
	for o := int64(0); o < 12; o++ {
		if inSpans(spans, o) != slices.Contains(offs, o) {
			t.Fatalf("offset %d: in spans %v", o, inSpans(spans, o))
		}
	}
	for _, foreign := range []string{"", "python wrote this", "kombu-delivered:x", "kombu-delivered:5-3"} {
		if decodeDelivered(foreign) != nil {
			t.Fatalf("%q decoded", foreign)
		}
	}
	var many []int64
	for i := int64(0); i < 5000; i += 2 {
		many = append(many, i)
	}
	if m := encodeDelivered(many); len(m) > maxMeta || m != "kombu-delivered:0-4998" {
		t.Fatalf("long list collapsed to %q", m[:min(len(m), 60)])
	}
}

func TestTopicNames(t *testing.T) {
	if got := topicName("celery@worker1.dq"); got != "celeryworker1.dq" {
		t.Fatalf("topicName %q", got)
	}
	if got := groupName("celery@w"); got != "celeryw-consumer-group" {
		t.Fatalf("groupName %q", got)
	}
	for _, ok := range []string{"a", "A.b_c-9", strings.Repeat("x", 249)} {
		if err := checkTopic(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a b", "a/b", "é", strings.Repeat("x", 250)} {
		if err := checkTopic(bad); !errors.Is(err, transport.ErrNotSupported) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestParseOptions(t *testing.T) {
	parse := func(raw string) (*options, error) {
		u, err := transport.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return parseOptions(u)
	}
	o, err := parse("confluentkafka://k1?brokers=k2:9093,k3&num_partitions=4&replication_factor=3&wait_time_seconds=0.5")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.seeds, []string{"k1:9092", "k2:9093", "k3:9092"}) || o.numPartitions != 4 || o.replication != 3 ||
		o.waitTime.Seconds() != 0.5 {
		t.Fatalf("options %+v", o)
	}
	for _, bad := range []string{
		"kafka://k1/path", "kafka://k1?nope=1", "kafka://k1?num_partitions=0",
		"kafka://k1?security_protocol=sasl_ssl", "kafka://k1?kafka_common_config=x",
		"kafka://k1?security_protocol=sasl_plaintext&sasl_mechanism=PLAIN",
	} {
		if _, err := parse(bad); !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
	o, err = parse("kafka://user:secret@k1?security_protocol=sasl_ssl&sasl_mechanism=scram-sha-512")
	if err != nil || o.saslMechanism != "SCRAM-SHA-512" || o.password != "secret" {
		t.Fatalf("%+v %v", o, err)
	}
}

// TestTrackerSlidesDown: a long run of settled records behind unsettled
// ones is dropped from the array, and what is left keeps its order.
func TestTrackerSlidesDown(t *testing.T) {
	tr := newTracker()
	for off := range int64(3000) {
		tr.handOut(off)
	}
	for off := range int64(2000) {
		if !tr.settle(off) {
			t.Fatalf("offset %d was not pending", off)
		}
	}
	if tr.head > 1024 {
		t.Fatalf("head at %d of %d: the settled records were not dropped", tr.head, len(tr.pend))
	}
	if cp, n, offs := tr.commitPoint(), tr.unsettled(), tr.offsets(); cp != 2000 || n != 1000 || len(offs) != 1000 || offs[0] != 2000 || offs[999] != 2999 {
		t.Fatalf("commit point %d, %d unsettled, offsets %d..%d (%d)", cp, n, offs[0], offs[len(offs)-1], len(offs))
	}
	if tr.settle(1500) || !tr.settle(2999) || tr.commitPoint() != 2000 {
		t.Fatal("settling after the slide")
	}
}

// TestBatchPutsQueueTheirRecords: in a PublishBatch, Put only makes the
// record, in the order of the Puts, for the batch to produce all at once
// (the store here has no client: a Put that produced would panic).
func TestBatchPutsQueueTheirRecords(t *testing.T) {
	s := &store{o: &options{maxRecordBytes: 1 << 10}, topics: map[string]bool{"a": true, "b": true}}
	b := newBatch(3)
	ctx := context.WithValue(context.Background(), batchKey{}, b)
	for i, q := range []string{"a", "b", "a"} {
		b.cur = i
		if err := s.Put(ctx, virtual.Message{Queue: q, Envelope: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range b.queued {
		got = append(got, r.Topic+":"+string(r.Value))
	}
	if want := []string{"a:0", "b:1", "a:2"}; !slices.Equal(got, want) {
		t.Fatalf("queued records %q, want %q", got, want)
	}
}
