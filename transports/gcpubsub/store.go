package gcpubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// pullBatch is how many messages Size and Purge pull at once.
const pullBatch = 1000

// pullTimeout bounds a pull that asks for an immediate answer.
const pullTimeout = 30 * time.Second

// graceAfter is how long a call that must not be cut short may run: a
// second past ctx's deadline, at most d.
func graceAfter(ctx context.Context, d time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(d, time.Until(dl)+time.Second)
	}
	return d
}

// shared is what every connection of this process to one project shares,
// as Kombu's Channel keeps it in class attributes: the fanout
// subscriptions this process made (Kombu's _tmp_subscriptions, one per
// queue and process), and the messages it has handed out and put back,
// so that their next delivery is marked redelivered (Pub/Sub cannot
// rewrite a message, and gives a delivery attempt count only to
// subscriptions with a dead-letter policy).
type shared struct {
	mu      sync.Mutex
	conns   int
	fanout  map[string]string // queue -> fanout subscription path
	seen    map[string]struct{}
	deleted map[string]bool // exchanges deleted while a subscription kept their topic
	// deadLetter is the dead-letter policy of each queue's subscription
	// (by Kombu's subscription path) declared with one in this process:
	// a subscription made again (a binding moves it) keeps it.
	deadLetter map[string]*pubsubpb.DeadLetterPolicy
}

// maxSeen bounds the redelivered message ids a process remembers.
const maxSeen = 1 << 16

var (
	sharedMu sync.Mutex
	shareds  = map[string]*shared{}
)

func sharedFor(key string) *shared {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sh := shareds[key]
	if sh == nil {
		sh = &shared{fanout: map[string]string{}, seen: map[string]struct{}{}, deleted: map[string]bool{},
			deadLetter: map[string]*pubsubpb.DeadLetterPolicy{}}
		shareds[key] = sh
	}
	sh.conns++
	return sh
}

// release drops a connection; the last one gets the fanout subscriptions
// to delete (Kombu deletes them when a channel closes).
func (sh *shared) release() []string {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.conns--
	if sh.conns > 0 {
		return nil
	}
	var subs []string
	for _, p := range sh.fanout {
		subs = append(subs, p)
	}
	clear(sh.fanout)
	return subs
}

// store is the virtual.Store over one project: a queue is a subscription
// (Kombu's entity name of the queue), an exchange is a topic named as the
// exchange, and a binding is the subscription's topic and filter.
type store struct {
	client  *pubsub.Client
	o       *options
	log     *slog.Logger
	sh      *shared
	procID  string
	stop    chan struct{}
	stopped sync.WaitGroup

	mu          sync.Mutex
	outstanding map[string]map[string]struct{} // subscription -> ack ids taken and not settled
	subs        map[string]*subInfo            // subscription path -> what it is bound to
}

// subInfo is a subscription's topic and filter keys.
type subInfo struct {
	topic  string   // full path
	keys   []string // routing keys of its filter; empty: no filter
	filter bool
}

// receipt is a message taken from a subscription.
type receipt struct {
	sub, ackID, msgID string
	envelope          []byte
}

func newStore(client *pubsub.Client, o *options, log *slog.Logger) *store {
	return &store{
		client:      client,
		o:           o,
		log:         log,
		sh:          sharedFor(o.project + "\x00" + o.emulatorHost),
		procID:      processID(),
		stop:        make(chan struct{}),
		outstanding: map[string]map[string]struct{}{},
		subs:        map[string]*subInfo{},
	}
}

func (s *store) topicPath(id string) string { return "projects/" + s.o.project + "/topics/" + id }
func (s *store) subPath(id string) string   { return "projects/" + s.o.project + "/subscriptions/" + id }

// queueSub is the subscription Kombu names for the queue.
func (s *store) queueSub(queue string) string { return s.subPath(entityName(s.o.prefix, queue)) }

// ownTopic is the topic of a queue that is bound to no exchange: kombu-go
// makes one, named as the queue's subscription, so that the default
// exchange reaches the queue (Kombu has none: its queues exist only once
// bound).
func (s *store) ownTopic(queue string) string { return s.topicPath(entityName(s.o.prefix, queue)) }

// subFor is the subscription the queue is read from: this process's
// fanout subscription where it made one, Kombu's queue subscription
// otherwise.
func (s *store) subFor(queue string) string {
	s.sh.mu.Lock()
	p, ok := s.sh.fanout[queue]
	s.sh.mu.Unlock()
	if ok {
		return p
	}
	return s.queueSub(queue)
}

// ping checks that the service answers and takes the credentials.
func (s *store) ping(ctx context.Context) error {
	it := s.client.TopicAdminClient.ListTopics(ctx, &pubsubpb.ListTopicsRequest{Project: "projects/" + s.o.project, PageSize: 1})
	_, err := it.Next()
	if err == nil || isDone(err) {
		return nil
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("gcpubsub: project %s: %w: %w: %v", s.o.project, ErrCredentials, transport.ErrAccessRefused, err)
	case codes.NotFound:
		return fmt.Errorf("gcpubsub: project %s: %w: %v", s.o.project, transport.ErrNotFound, err)
	}
	return fmt.Errorf("gcpubsub: project %s: %w", s.o.project, err)
}

// isDone reports the iterator's end.
func isDone(err error) bool { return errors.Is(err, iterator.Done) }

func isCode(err error, c codes.Code) bool { return status.Code(err) == c }

// named turns the service's refusal of a name into ErrNotSupported naming
// it.
func named(what, name string, err error) error {
	if isCode(err, codes.InvalidArgument) {
		return fmt.Errorf("%s %q refused by Pub/Sub: %w: %v", what, name, transport.ErrNotSupported, err)
	}
	return fmt.Errorf("%s %q: %w", what, name, err)
}

// start runs Kombu's ack deadline extender: every quarter of the ack
// deadline (5 s at least) the deadline of every message taken and not yet
// settled is pushed back by a whole deadline, so that a handler that runs
// long does not see its message go to another consumer.
func (s *store) start() {
	every := max(minAckDeadline/2, s.o.ackDeadline/4)
	s.stopped.Add(1)
	go func() {
		defer s.stopped.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.extend()
			}
		}
	}()
}

func (s *store) extend() {
	s.mu.Lock()
	work := map[string][]string{}
	for sub, ids := range s.outstanding {
		for id := range ids {
			work[sub] = append(work[sub], id)
		}
	}
	s.mu.Unlock()
	for sub, ids := range work {
		for i := 0; i < len(ids); i += s.o.ackModifyBatch {
			batch := ids[i:min(i+s.o.ackModifyBatch, len(ids))]
			ctx, cancel := context.WithTimeout(context.Background(), s.o.ackDeadline/4)
			err := s.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
				Subscription: sub, AckIds: batch, AckDeadlineSeconds: int32(s.o.ackDeadline / time.Second),
			})
			cancel()
			if err != nil {
				s.log.Warn("gcpubsub: could not extend ack deadlines", "subscription", sub, "messages", len(batch), "error", err)
			}
		}
	}
}

func (s *store) track(sub, ackID string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.outstanding[sub]
	if on {
		if ids == nil {
			ids = map[string]struct{}{}
			s.outstanding[sub] = ids
		}
		ids[ackID] = struct{}{}
		return
	}
	delete(ids, ackID)
	if len(ids) == 0 {
		delete(s.outstanding, sub)
	}
}

// info returns what the subscription is bound to, from the service the
// first time.
func (s *store) info(ctx context.Context, sub string) (*subInfo, error) {
	s.mu.Lock()
	in := s.subs[sub]
	s.mu.Unlock()
	if in != nil {
		return in, nil
	}
	ps, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	if err != nil {
		return nil, err
	}
	in = &subInfo{topic: ps.Topic, filter: ps.Filter != ""}
	if keys, ok := filterKeys(ps.Filter); ok {
		in.keys = keys
	} else {
		return nil, fmt.Errorf("subscription %s has a filter kombu-go did not write (%s): %w", sub, ps.Filter, transport.ErrNotSupported)
	}
	s.mu.Lock()
	s.subs[sub] = in
	s.mu.Unlock()
	return in, nil
}

func (s *store) forget(sub string) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// checkID refuses, before asking, a topic or subscription id Pub/Sub
// refuses: 3 to 255 letters, digits and "-_.~+%", beginning with a
// letter and not with "goog" (emulators accept any).
func checkID(kind, path string) error {
	id := path[strings.LastIndexByte(path, '/')+1:]
	ok := len(id) >= 3 && len(id) <= 255 && !strings.HasPrefix(strings.ToLower(id), "goog")
	for i, r := range id {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !ok || (i == 0 && !letter) || !(letter || r >= '0' && r <= '9' || strings.ContainsRune("-_.~+%", r)) {
			ok = false
			break
		}
	}
	if !ok {
		return fmt.Errorf("%s id %q refused by Pub/Sub (3 to 255 letters, digits and -_.~+%%, beginning with a letter, not with goog): %w", kind, id, transport.ErrNotSupported)
	}
	return nil
}

// ensureTopic creates the topic unless it exists.
func (s *store) ensureTopic(ctx context.Context, path string, retention time.Duration) error {
	if err := checkID("topic", path); err != nil {
		return err
	}
	t := &pubsubpb.Topic{Name: path}
	if retention > 0 {
		t.MessageRetentionDuration = durationpb.New(retention)
	}
	_, err := s.client.TopicAdminClient.CreateTopic(ctx, t)
	if err != nil && !isCode(err, codes.AlreadyExists) {
		return named("topic", path, err)
	}
	return nil
}

// createSub creates the subscription as Kombu's _create_subscription does:
// the ack deadline, expiration policy, retention and exactly-once delivery
// of the transport options, and the routing key filter.
func (s *store) createSub(ctx context.Context, sub, topic string, keys []string, retention time.Duration) error {
	if err := checkID("subscription", sub); err != nil {
		return err
	}
	req := &pubsubpb.Subscription{
		Name:                      sub,
		Topic:                     topic,
		AckDeadlineSeconds:        int32(s.o.ackDeadline / time.Second),
		ExpirationPolicy:          &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(s.o.expiration)},
		MessageRetentionDuration:  durationpb.New(retention),
		EnableExactlyOnceDelivery: s.o.exactlyOnce,
	}
	if len(keys) > 0 {
		req.Filter = routingKeyFilter(keys)
	}
	req.DeadLetterPolicy = s.deadLetterOf(sub)
	_, err := s.client.SubscriptionAdminClient.CreateSubscription(ctx, req)
	if err != nil && !isCode(err, codes.AlreadyExists) {
		return named("subscription", sub, err)
	}
	s.forget(sub)
	return nil
}

// deadLetterOf is the dead-letter policy declared for the subscription's
// queue: Kombu's subscription's, or, for this process's fanout
// subscription of the queue, the queue's.
func (s *store) deadLetterOf(sub string) *pubsubpb.DeadLetterPolicy {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	if p, ok := s.sh.deadLetter[sub]; ok {
		return p
	}
	return s.sh.deadLetter[strings.TrimSuffix(sub, "-"+s.procID)]
}

// setDeadLetter gives the queue's subscription Pub/Sub's dead-letter
// policy: a message delivered attempts times and not acknowledged is
// forwarded, as it is, to the dead-letter exchange's topic (made if it
// does not exist), whose subscriptions' filters route it by its own
// routing key. Pub/Sub counts every pull as an attempt: a requeue, an ack
// deadline that ran out, and Size's count too.
func (s *store) setDeadLetter(ctx context.Context, queue, exchange string, attempts int32) error {
	topic := s.topicPath(exchange)
	if err := s.ensureTopic(ctx, topic, s.o.expiration); err != nil {
		return err
	}
	p := &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic, MaxDeliveryAttempts: attempts}
	s.sh.mu.Lock()
	s.sh.deadLetter[s.queueSub(queue)] = p
	s.sh.mu.Unlock()
	sub := s.subFor(queue)
	_, err := s.client.SubscriptionAdminClient.UpdateSubscription(ctx, &pubsubpb.UpdateSubscriptionRequest{
		Subscription: &pubsubpb.Subscription{Name: sub, DeadLetterPolicy: p},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"dead_letter_policy"}},
	})
	if err != nil {
		return fmt.Errorf("subscription %s: set the dead-letter policy (topic %s, %d delivery attempts): %w", sub, topic, attempts, err)
	}
	return nil
}

func (s *store) deleteSub(ctx context.Context, sub string) error {
	err := s.client.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: sub})
	s.forget(sub)
	if err != nil && !isCode(err, codes.NotFound) {
		return fmt.Errorf("delete subscription %s: %w", sub, err)
	}
	return nil
}

// DeclareQueue makes the queue's subscription, on a topic of its own,
// unless it exists (see ownTopic).
func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	sub := s.subFor(queue)
	if _, err := s.info(ctx, sub); err == nil || !isCode(err, codes.NotFound) {
		return err
	}
	return s.makeOwn(ctx, queue)
}

func (s *store) makeOwn(ctx context.Context, queue string) error {
	topic := s.ownTopic(queue)
	if err := s.ensureTopic(ctx, topic, 0); err != nil {
		return err
	}
	return s.createSub(ctx, s.queueSub(queue), topic, nil, s.o.expiration)
}

// pullAll pulls every ready message of the subscription, a batch at a
// time, and hands each batch's ack ids to settle.
func (s *store) pullAll(ctx context.Context, sub string, settle func([]string) error) (int, error) {
	n := 0
	for {
		//lint:ignore SA1019 a count needs an immediate answer (the service still honours it)
		resp, err := s.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: pullBatch, ReturnImmediately: true})
		if err != nil {
			return n, err
		}
		if len(resp.ReceivedMessages) == 0 {
			return n, nil
		}
		ids := make([]string, len(resp.ReceivedMessages))
		for i, m := range resp.ReceivedMessages {
			ids[i] = m.AckId
		}
		if err := settle(ids); err != nil {
			return n, err
		}
		n += len(ids)
	}
}

// Size counts the ready messages of the queue's subscription. Pub/Sub has
// no count (Kombu asks Cloud Monitoring, which lags by minutes, and
// answers -1 on the emulator): Size pulls them all and gives them back at
// once, which another consumer sees as a moment without messages.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	sub := s.subFor(queue)
	if _, err := s.info(ctx, sub); err != nil {
		if isCode(err, codes.NotFound) {
			return 0, false, nil
		}
		return 0, false, err
	}
	var pulled []string
	n, err := s.pullAll(ctx, sub, func(ids []string) error {
		pulled = append(pulled, ids...)
		return nil
	})
	if len(pulled) > 0 {
		if nerr := s.nack(context.WithoutCancel(ctx), sub, pulled); nerr != nil && err == nil {
			err = nerr
		}
	}
	if isCode(err, codes.NotFound) {
		return 0, false, nil
	}
	return n, true, err
}

func (s *store) nack(ctx context.Context, sub string, ids []string) error {
	for i := 0; i < len(ids); i += s.o.ackModifyBatch {
		err := s.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
			Subscription: sub, AckIds: ids[i:min(i+s.o.ackModifyBatch, len(ids))], AckDeadlineSeconds: 0,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *store) ack(ctx context.Context, sub string, ids []string) error {
	for i := 0; i < len(ids); i += s.o.ackModifyBatch {
		err := s.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
			Subscription: sub, AckIds: ids[i:min(i+s.o.ackModifyBatch, len(ids))],
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Purge acknowledges every ready message of the queue's subscription.
// Taken messages stay taken (Kombu seeks the subscription to now, which
// drops them too).
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	sub := s.subFor(queue)
	n, err := s.pullAll(ctx, sub, func(ids []string) error { return s.ack(ctx, sub, ids) })
	if isCode(err, codes.NotFound) {
		return n, nil
	}
	return n, err
}

// DeleteQueue purges and deletes the queue's subscriptions, and the topic
// of its own where it has one.
func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	n, err := s.Purge(ctx, queue)
	if err != nil {
		return n, err
	}
	s.sh.mu.Lock()
	fan, ok := s.sh.fanout[queue]
	delete(s.sh.fanout, queue)
	delete(s.sh.deadLetter, s.queueSub(queue)) // a queue declared again under the name starts without
	s.sh.mu.Unlock()
	if ok {
		if err := s.deleteSub(ctx, fan); err != nil {
			return n, err
		}
	}
	sub := s.queueSub(queue)
	in, err := s.info(ctx, sub)
	switch {
	case isCode(err, codes.NotFound):
		return n, nil
	case err != nil:
		return n, err
	}
	if err := s.deleteSub(ctx, sub); err != nil {
		return n, err
	}
	if in.topic == s.ownTopic(queue) {
		err := s.client.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: in.topic})
		if err != nil && !isCode(err, codes.NotFound) {
			return n, fmt.Errorf("delete topic %s: %w", in.topic, err)
		}
	}
	return n, nil
}

// Put publishes the envelope to the topic of the queue's subscription,
// with the routing_key attribute its filter lets through: the default
// exchange's way to a queue. Another subscription of that topic with the
// same filter (a queue bound to the same exchange with the same key) gets
// a copy too, as in Kombu.
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	sub := s.subFor(m.Queue)
	in, err := s.info(ctx, sub)
	if isCode(err, codes.NotFound) {
		if err := s.makeOwn(ctx, m.Queue); err != nil {
			return err
		}
		in, err = s.info(ctx, sub)
	}
	if err != nil {
		return err
	}
	key := m.Queue
	switch {
	case len(in.keys) == 1:
		key = in.keys[0]
	case len(in.keys) > 1:
		// The filter passes several keys: the message's own, where it is
		// one of them (a dead letter routed by one of them).
		key = in.keys[0]
		if d, err := virtual.DecodeEnvelope(m.Envelope); err == nil && slices.Contains(in.keys, d.RoutingKey) {
			key = d.RoutingKey
		}
	}
	pm := []*pubsubpb.PubsubMessage{message(m.Envelope, key, true)}
	err = s.publish(ctx, in.topic, pm)
	if !errors.Is(err, transport.ErrNotFound) {
		return err
	}
	// The exchange's topic was deleted and the subscription left
	// detached: the queue goes back to a topic of its own, if it is empty.
	own := s.ownTopic(m.Queue)
	if err := s.ensureTopic(ctx, own, 0); err != nil {
		return err
	}
	if err := s.remake(ctx, m.Queue, sub, own, nil, fmt.Sprintf("publish to queue %q, whose exchange's topic %s is gone", m.Queue, in.topic)); err != nil {
		return err
	}
	pm[0].Attributes["routing_key"] = m.Queue
	return s.publish(ctx, own, pm)
}

// message is a Pub/Sub message as Kombu publishes one: the envelope as
// data, the routing key as the routing_key attribute (Kombu sends none
// through a fanout exchange).
func message(envelope []byte, routingKey string, withKey bool) *pubsubpb.PubsubMessage {
	pm := &pubsubpb.PubsubMessage{Data: envelope}
	if withKey {
		pm.Attributes = map[string]string{"routing_key": routingKey}
	}
	return pm
}

// publishRetry retries a publish on the codes the client library retries
// it on, but waits at most a second between attempts where the library
// waits up to a minute (growing fourfold from 100 ms): a publish made while
// the service restarts then goes through within about a second of its
// return, not after a wait its caller's context may not allow.
var publishRetry = gax.WithRetry(func() gax.Retryer {
	return gax.OnCodes([]codes.Code{codes.Aborted, codes.Canceled, codes.Internal, codes.ResourceExhausted,
		codes.Unknown, codes.Unavailable, codes.DeadlineExceeded},
		gax.Backoff{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2})
})

// checkSize refuses, before sending, a message over Pub/Sub's limit.
func checkSize(m *pubsubpb.PubsubMessage) error {
	if size := len(m.Data) + 11 + len(m.Attributes["routing_key"]); size > maxMessageBytes {
		return fmt.Errorf("a message of %d bytes (with Kombu's envelope) exceeds Pub/Sub's limit of %d: %w", size, maxMessageBytes, codec.ErrLimitExceeded)
	}
	return nil
}

// publish sends the messages to the topic in one request (Put and Publish
// send one message; PublishBatch goes through publishSplit).
func (s *store) publish(ctx context.Context, topic string, msgs []*pubsubpb.PubsubMessage) error {
	for _, m := range msgs {
		if err := checkSize(m); err != nil {
			return err
		}
	}
	_, err := s.client.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: msgs}, publishRetry)
	if isCode(err, codes.NotFound) {
		return fmt.Errorf("topic %s: %w: %v", topic, transport.ErrNotFound, err)
	}
	return err
}

// Pub/Sub's limits on one PublishRequest (the client's
// MaxPublishRequestCount and MaxPublishRequestBytes): the service refuses
// a larger request whole.
const (
	maxRequestMessages = pubsub.MaxPublishRequestCount
	maxRequestBytes    = int(pubsub.MaxPublishRequestBytes)
)

// publishSplit sends the messages to the topic in order, in as few
// requests as Pub/Sub's limits allow, and returns each message's error: a
// message over the size limit fails alone, before sending, and a request
// that fails fails its messages.
func (s *store) publishSplit(ctx context.Context, topic string, msgs []*pubsubpb.PubsubMessage) []error {
	errs := make([]error, len(msgs))
	base := protowire.SizeTag(1) + protowire.SizeBytes(len(topic)) // PublishRequest.topic
	var chunk []*pubsubpb.PubsubMessage
	var at []int
	size := base
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		if err := s.publish(ctx, topic, chunk); err != nil {
			for _, i := range at {
				errs[i] = err
			}
		}
		chunk, at, size = chunk[:0:0], at[:0:0], base
	}
	for i, m := range msgs {
		if err := checkSize(m); err != nil {
			errs[i] = err
			continue
		}
		n := protowire.SizeTag(2) + protowire.SizeBytes(proto.Size(m)) // PublishRequest.messages
		if base+n > maxRequestBytes {
			errs[i] = fmt.Errorf("a message of %d bytes exceeds Pub/Sub's limit of %d a request: %w", n, maxRequestBytes-base, codec.ErrLimitExceeded)
			continue
		}
		if len(chunk) == maxRequestMessages || size+n > maxRequestBytes {
			flush()
		}
		chunk, at, size = append(chunk, m), append(at, i), size+n
	}
	flush()
	return errs
}

// Take pulls one message (see TakeBatch).
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// maxPull bounds the messages one pull asks for: the most a consumer's
// prefetch asks at once, well under Pub/Sub's limit of 1000.
const maxPull = 1000

// TakeBatch pulls up to n messages in one Pull that returns at once (the
// virtual connection polls), leased to this process for the
// subscription's ack deadline, which the store extends until they are
// settled.
func (s *store) TakeBatch(ctx context.Context, queue string, n int) ([]virtual.Taken, error) {
	sub := s.subFor(queue)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A pull the caller cancels in flight may have leased messages on the
	// server that the client never sees, hidden for a whole ack deadline:
	// the pull runs to its end (it returns at once) and messages that
	// arrive after ctx ended go back.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), graceAfter(ctx, pullTimeout))
	//lint:ignore SA1019 the virtual connection polls: a take must not wait (the service still honours it)
	resp, err := s.client.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: int32(min(max(n, 1), maxPull)), ReturnImmediately: true})
	cancel()
	if isCode(err, codes.NotFound) || (err == nil && len(resp.ReceivedMessages) == 0) {
		return nil, transport.ErrEmpty
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		ids := make([]string, len(resp.ReceivedMessages))
		for i, rm := range resp.ReceivedMessages {
			ids[i] = rm.AckId
		}
		nctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
		_ = s.nack(nctx, sub, ids)
		cancel()
		return nil, err
	}
	ts := make([]virtual.Taken, len(resp.ReceivedMessages))
	for i, rm := range resp.ReceivedMessages {
		s.track(sub, rm.AckId, true)
		msgID := rm.GetMessage().GetMessageId()
		s.sh.mu.Lock()
		_, seen := s.sh.seen[msgID]
		s.sh.mu.Unlock()
		data := rm.GetMessage().GetData()
		ts[i] = virtual.Taken{
			Envelope:    data,
			Receipt:     &receipt{sub: sub, ackID: rm.AckId, msgID: msgID, envelope: data},
			Redelivered: seen || rm.DeliveryAttempt > 1,
		}
	}
	return ts, nil
}

// Ack acknowledges the message.
func (s *store) Ack(ctx context.Context, r virtual.Receipt) error {
	rc := r.(*receipt)
	s.track(rc.sub, rc.ackID, false)
	s.unsee(rc.msgID)
	err := s.ack(ctx, rc.sub, []string{rc.ackID})
	if isCode(err, codes.NotFound) {
		return nil
	}
	return err
}

func (s *store) unsee(id string) {
	s.sh.mu.Lock()
	delete(s.sh.seen, id)
	s.sh.mu.Unlock()
}

// Restore nacks the message, which Pub/Sub then delivers again. It cannot
// rewrite it: when the connection marks it redelivered, this process
// remembers its id instead.
func (s *store) Restore(ctx context.Context, r virtual.Receipt, envelope []byte) error {
	rc := r.(*receipt)
	s.track(rc.sub, rc.ackID, false)
	if !bytes.Equal(envelope, rc.envelope) {
		s.sh.mu.Lock()
		if len(s.sh.seen) >= maxSeen {
			clear(s.sh.seen)
		}
		s.sh.seen[rc.msgID] = struct{}{}
		s.sh.mu.Unlock()
	}
	err := s.nack(ctx, rc.sub, []string{rc.ackID})
	if isCode(err, codes.NotFound) {
		return nil
	}
	return err
}

// bind makes the binding Kombu's _queue_bind makes: through a direct
// exchange, the queue's subscription on the exchange's topic with the
// routing key filter; through a fanout exchange, a subscription of this
// process's own, without a filter. A Pub/Sub subscription has one topic
// and a filter that cannot change, so a queue already subscribed
// elsewhere is moved (deleted and made again) only while it holds no
// message; a second key on the same exchange is added to the filter the
// same way.
func (s *store) bind(ctx context.Context, exchange, typ, key, queue string) error {
	topic := s.topicPath(exchange)
	if typ == transport.ExchangeFanout {
		if err := s.ensureTopic(ctx, topic, fanoutRetention); err != nil {
			return err
		}
		sub := s.subPath(entityName(s.o.prefix, queue) + "-" + s.procID)
		if err := s.createSub(ctx, sub, topic, nil, fanoutRetention); err != nil {
			return err
		}
		s.sh.mu.Lock()
		s.sh.fanout[queue] = sub
		s.sh.mu.Unlock()
		return nil
	}
	if err := s.ensureTopic(ctx, topic, s.o.expiration); err != nil {
		return err
	}
	sub := s.queueSub(queue)
	in, err := s.info(ctx, sub)
	if isCode(err, codes.NotFound) {
		return s.createSub(ctx, sub, topic, []string{key}, s.o.expiration)
	}
	if err != nil {
		return err
	}
	keys := []string{key}
	if in.topic == topic {
		if !in.filter || containsKey(in.keys, key) {
			return nil
		}
		keys = append(in.keys, key)
	}
	return s.remake(ctx, queue, sub, topic, keys, fmt.Sprintf("bind queue %q to exchange %q with key %q", queue, exchange, key))
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// busy reports that this process holds messages of the subscription.
func (s *store) busy(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outstanding[sub]) > 0
}

// remake replaces the queue's subscription by one on the topic with the
// keys, if it holds no message (none ready, none taken by this process).
func (s *store) remake(ctx context.Context, queue, sub, topic string, keys []string, what string) error {
	n, _, err := s.Size(ctx, queue)
	if err != nil {
		return err
	}
	if n == 0 && s.busy(sub) {
		n = 1
	}
	if n > 0 {
		return fmt.Errorf("%s: its subscription %s holds %d messages and a Pub/Sub subscription cannot change its topic or filter: %w", what, sub, n, transport.ErrNotSupported)
	}
	in, err := s.info(ctx, sub)
	if err != nil {
		return err
	}
	if err := s.deleteSub(ctx, sub); err != nil {
		return err
	}
	if in.topic == s.ownTopic(queue) && in.topic != topic {
		// The queue's own topic has no other subscription: best effort.
		_ = s.client.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: in.topic})
	}
	return s.createSub(ctx, sub, topic, keys, s.o.expiration)
}

// unbind removes the key from the queue's subscription: the subscription
// is the binding, so the queue goes back to a topic of its own (or loses
// the key from its filter), while it holds no message.
func (s *store) unbind(ctx context.Context, exchange, key, queue string) error {
	topic := s.topicPath(exchange)
	s.sh.mu.Lock()
	fan, ok := s.sh.fanout[queue]
	s.sh.mu.Unlock()
	if ok {
		if in, err := s.info(ctx, fan); err == nil && in.topic == topic {
			s.sh.mu.Lock()
			delete(s.sh.fanout, queue)
			s.sh.mu.Unlock()
			return s.deleteSub(ctx, fan)
		}
	}
	sub := s.queueSub(queue)
	in, err := s.info(ctx, sub)
	if isCode(err, codes.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if in.topic != topic || !containsKey(in.keys, key) {
		return nil
	}
	what := fmt.Sprintf("unbind queue %q from exchange %q with key %q", queue, exchange, key)
	if len(in.keys) > 1 {
		rest := make([]string, 0, len(in.keys)-1)
		for _, k := range in.keys {
			if k != key {
				rest = append(rest, k)
			}
		}
		return s.remake(ctx, queue, sub, topic, rest, what)
	}
	own := s.ownTopic(queue)
	if err := s.ensureTopic(ctx, own, 0); err != nil {
		return err
	}
	return s.remake(ctx, queue, sub, own, nil, what)
}

// Bind and Unbind are the connection's (it knows the exchange's type).
func (s *store) Bind(ctx context.Context, exchange string, b virtual.Binding) error {
	return s.bind(ctx, exchange, transport.ExchangeDirect, b.RoutingKey, b.Queue)
}

func (s *store) Unbind(ctx context.Context, exchange string, b virtual.Binding) error {
	return s.unbind(ctx, exchange, b.RoutingKey, b.Queue)
}

// Bindings lists the subscriptions of the exchange's topic as rows of
// Kombu's table (the queue named as its subscription, without the
// prefix), one row per routing key, and one for all the subscriptions
// without a filter: the virtual connection, dead-lettering through the
// exchange, stores one copy per row it matches, and Put publishes that
// copy to the topic, where Pub/Sub hands it to every subscription the key
// passes. Rows per queue would put a copy in each of them per queue.
func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	it := s.client.TopicAdminClient.ListTopicSubscriptions(ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: s.topicPath(exchange)})
	var rows []virtual.Binding
	for {
		sub, err := it.Next()
		if isDone(err) || isCode(err, codes.NotFound) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		in, err := s.info(ctx, sub)
		if err != nil {
			if isCode(err, codes.NotFound) {
				continue
			}
			return rows, err
		}
		queue := strings.TrimPrefix(sub[strings.LastIndexByte(sub, '/')+1:], s.o.prefix)
		if len(in.keys) == 0 && !slices.ContainsFunc(rows, func(b virtual.Binding) bool { return b.RoutingKey == "" }) {
			rows = append(rows, virtual.Binding{Queue: queue})
		}
		for _, k := range in.keys {
			if !slices.ContainsFunc(rows, func(b virtual.Binding) bool { return b.RoutingKey == k }) {
				rows = append(rows, virtual.Binding{RoutingKey: k, Queue: queue})
			}
		}
	}
}

// DeleteExchange unbinds the exchange's queues and deletes its topic. A
// binding is a subscription, which Pub/Sub cannot move to another topic:
// an empty one is made again on its queue's own topic; one that holds
// messages (ready, or taken by this process) cannot move, so the topic
// stays for it, and this process refuses publishes through the exchange
// until it is declared again (another process's publishes still reach
// the queue). Kombu never deletes a topic.
func (s *store) DeleteExchange(ctx context.Context, exchange string) error {
	topic := s.topicPath(exchange)
	it := s.client.TopicAdminClient.ListTopicSubscriptions(ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: topic})
	var subs []string
	for {
		sub, err := it.Next()
		if isDone(err) || isCode(err, codes.NotFound) {
			break
		}
		if err != nil {
			return err
		}
		subs = append(subs, sub)
	}
	stays := false
	for _, sub := range subs {
		queue := strings.TrimPrefix(sub, s.subPath(""))
		if strings.HasSuffix(queue, "-"+s.procID) {
			// A fanout subscription of this process: it goes with the
			// exchange, as Kombu's go when the channel closes.
			s.sh.mu.Lock()
			for q, p := range s.sh.fanout {
				if p == sub {
					delete(s.sh.fanout, q)
				}
			}
			s.sh.mu.Unlock()
			if err := s.deleteSub(ctx, sub); err != nil {
				return err
			}
			continue
		}
		queue = strings.TrimPrefix(queue, s.o.prefix)
		if s.queueSub(queue) != sub {
			stays = true // not a name this prefix makes: leave it
			continue
		}
		own := s.ownTopic(queue)
		if err := s.ensureTopic(ctx, own, 0); err != nil {
			return err
		}
		err := s.remake(ctx, queue, sub, own, nil, "delete exchange "+exchange)
		switch {
		case errors.Is(err, transport.ErrNotSupported):
			stays = true
		case err != nil:
			return err
		}
	}
	s.sh.mu.Lock()
	if stays {
		s.sh.deleted[exchange] = true
	} else {
		delete(s.sh.deleted, exchange)
	}
	s.sh.mu.Unlock()
	if stays {
		return nil
	}
	err := s.client.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: topic})
	if err != nil && !isCode(err, codes.NotFound) {
		return err
	}
	return nil
}

// deletedHere reports whether this process deleted the exchange while a
// queue's subscription kept its topic.
func (s *store) deletedHere(exchange string) bool {
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	return s.sh.deleted[exchange]
}

// undelete forgets a deletion: the exchange is declared again.
func (s *store) undelete(exchange string) {
	s.sh.mu.Lock()
	delete(s.sh.deleted, exchange)
	s.sh.mu.Unlock()
}

// Close stops the deadline extender, deletes this process's fanout
// subscriptions when it is its last connection, and closes the clients.
func (s *store) Close() error {
	close(s.stop)
	s.stopped.Wait()
	var errs []error
	if subs := s.sh.release(); len(subs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, sub := range subs {
			if err := s.deleteSub(ctx, sub); err != nil {
				errs = append(errs, err)
			}
		}
		cancel()
	}
	errs = append(errs, s.client.Close())
	return errors.Join(errs...)
}

// topicExists reports whether the exchange's topic exists.
func (s *store) topicExists(ctx context.Context, exchange string) (bool, error) {
	_, err := s.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: s.topicPath(exchange)})
	if isCode(err, codes.NotFound) {
		return false, nil
	}
	return err == nil, err
}

var _ virtual.BatchTaker = (*store)(nil)
