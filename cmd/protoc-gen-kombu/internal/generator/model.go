package generator

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
	"github.com/kombu-go/kombu/internal/topic"
)

// This file turns a proto file's kombu options into a checked model: for each
// service, its exchange, the exchanges and queues it declares, and its routes.
// Every default of DESIGN.md §2 is applied here, so the code printer only
// prints what the model says.

// service is one proto service: a set of routes publishing to one exchange.
type service struct {
	proto *protogen.Service
	// exchange is the exchange the routes publish to, name resolved.
	exchange *kombuv1.Exchange
	// exchanges is everything the service's topology declares: its own
	// exchange first, then the file topology's, then other services'
	// exchanges that its queues are bound to.
	exchanges []*kombuv1.Exchange
	// queues holds the routes' queues in method order, then the file
	// topology's other queues.
	queues []*queue
	routes []*route
	// tasks are the methods marked as Celery tasks, in method order.
	tasks []*celeryTask
}

// queue is one queue of a service's topology.
type queue struct {
	// decl holds the queue's settings, merged over every declaration of its
	// name; its routing_key and bindings are cleared (see bindings).
	decl *kombuv1.Queue
	// bindings are the queue's bindings with defaults applied: the exchange
	// is never empty.
	bindings []*kombuv1.Binding
	// routes are the routes consumed from the queue, in method order; none
	// for a queue only the file topology declares.
	routes []*route
}

// broadcast reports whether every consumer gets its own server-named copy of
// the queue (queue: {} in a route).
func (q *queue) broadcast() bool { return q.decl.GetName() == "" }

// consumersOwn reports whether the queue belongs to the connection of the
// consumer that declares it (broadcast or exclusive), so that a producer
// must not declare it.
func (q *queue) consumersOwn() bool { return q.broadcast() || q.decl.GetExclusive() }

// describeQueue names a queue in error messages.
func describeQueue(q *kombuv1.Queue) string {
	if q.GetName() == "" {
		return "(broadcast)"
	}
	return strconv.Quote(q.GetName())
}

// route is one rpc method: how its request message is published and where
// it is consumed.
type route struct {
	method *protogen.Method
	opts   *kombuv1.Route // never nil
	// key is the routing key, defaulted to the method's full name.
	key        string
	expiration time.Duration
	queue      *queue
}

// fullName is the method's full proto name: the message type property and
// the default routing key.
func (r *route) fullName() string { return string(r.method.Desc.FullName()) }

// replies reports whether the route is request/reply: its method returns a
// message other than google.protobuf.Empty.
func (r *route) replies() bool { return r.method.Output.Desc.FullName() != "google.protobuf.Empty" }

// serializer is the route's serializer: its own, or the producer's default.
func (r *route) serializer() string {
	if s := r.opts.GetSerializer(); s != "" {
		return s
	}
	return defaultSerializer
}

// defaultSerializer is what generated producers publish with and consumers
// accept when a route names no serializer.
const defaultSerializer = "protobuf"

// The names routes may use: the serializers every connection of the runtime
// has that carry proto messages (raw and text carry bytes and strings), and
// the compressions every connection has (Kombu's names, aliases included).
// A route naming another would generate code that fails at its first
// publish. options.proto lists both; the end-to-end tests publish and
// consume with every serializer.
var (
	serializers  = []string{"protobuf", "json", "protojson", "msgpack", "yaml"}
	compressions = []string{"zlib", "gzip", "bzip2", "bzip", "lzma", "xz", "brotli", "zstd", "zstandard"}
)

// fileModel holds what every service of one proto file shares: the file
// topology and the exchanges declared anywhere in the file.
type fileModel struct {
	file     *protogen.File
	topology *kombuv1.Topology
	// exchanges maps each exchange name the file declares, on a service or
	// in its topology, to one declaration merging every mention, so that a
	// service may name an exchange another service or the topology
	// describes in full.
	exchanges map[string]*kombuv1.Exchange
}

// buildFile builds and checks the model of every service in file.
func buildFile(file *protogen.File) ([]*service, error) {
	fm := &fileModel{
		file:      file,
		topology:  extension[*kombuv1.Topology](file.Desc.Options(), kombuv1.E_Topology),
		exchanges: make(map[string]*kombuv1.Exchange),
	}
	if fm.topology == nil {
		fm.topology = &kombuv1.Topology{}
	}
	var exchangeNames []string // of file.Services, by index
	for _, s := range file.Services {
		ex, err := serviceExchange(s)
		if err != nil {
			return nil, err
		}
		if field := fm.declareExchange(ex); field != "" {
			return nil, serviceError(s, "exchange %q is declared elsewhere in the file with a different %s", ex.GetName(), field)
		}
		exchangeNames = append(exchangeNames, ex.GetName())
	}
	if err := fm.checkTopology(); err != nil {
		return nil, err
	}
	var out []*service
	for i, s := range file.Services {
		svc, err := fm.buildService(s, fm.exchanges[exchangeNames[i]])
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}

// declareExchange merges ex into the file's declaration of its name and
// returns the field on which they disagree, if any.
func (fm *fileModel) declareExchange(ex *kombuv1.Exchange) protoreflect.Name {
	if prev := fm.exchanges[ex.GetName()]; prev != nil {
		return merge(prev, ex)
	}
	fm.exchanges[ex.GetName()] = proto.CloneOf(ex)
	return ""
}

// extension returns the extension xt of opts, or nil when it is not set.
// The plugin links the options' Go package, so protogen decodes them as
// typed messages; the comma-ok assertion guards against anything else.
func extension[T proto.Message](opts proto.Message, xt protoreflect.ExtensionType) T {
	var zero T
	if opts == nil || !proto.HasExtension(opts, xt) {
		return zero
	}
	v, ok := proto.GetExtension(opts, xt).(T)
	if !ok {
		return zero
	}
	return v
}

// serviceExchange returns the service's exchange option with its defaults
// applied: absent, a direct exchange named after the service; an empty
// name, the service's full name.
func serviceExchange(s *protogen.Service) (*kombuv1.Exchange, error) {
	ex := &kombuv1.Exchange{}
	if opt := extension[*kombuv1.Exchange](s.Desc.Options(), kombuv1.E_Exchange); opt != nil {
		ex = proto.CloneOf(opt)
	}
	if ex.GetName() == "" {
		ex.Name = string(s.Desc.FullName())
	}
	if err := checkExchange(ex); err != nil {
		return nil, serviceError(s, "exchange %q: %v", ex.GetName(), err)
	}
	return ex, nil
}

// checkTopology checks the file topology's own declarations. Bindings with
// an empty exchange are bound to each service's exchange, so only named
// exchanges are checked here.
func (fm *fileModel) checkTopology() error {
	for _, ex := range fm.topology.GetExchanges() {
		if ex.GetName() == "" {
			return topologyError(fm.file, "an exchange has no name")
		}
		if err := checkExchange(ex); err != nil {
			return topologyError(fm.file, "exchange %q: %v", ex.GetName(), err)
		}
		if field := fm.declareExchange(ex); field != "" {
			return topologyError(fm.file, "exchange %q is declared twice with different %s", ex.GetName(), field)
		}
	}
	queues := make(map[string]bool)
	for _, q := range fm.topology.GetQueues() {
		if q.GetName() == "" {
			return topologyError(fm.file, "a queue has no name (server-named queues belong in a route: queue: {})")
		}
		if queues[q.GetName()] {
			return topologyError(fm.file, "queue %q is declared twice", q.GetName())
		}
		queues[q.GetName()] = true
		if err := checkQueue(q, false); err != nil {
			return topologyError(fm.file, "queue %q: %v", q.GetName(), err)
		}
		if err := fm.checkQueueReferences(q); err != nil {
			return topologyError(fm.file, "queue %q: %v", q.GetName(), err)
		}
	}
	return nil
}

// checkQueueReferences reports a binding to, or a dead-letter exchange,
// that nobody declares: the binding would fail, and the broker would drop
// every dead letter. The broker declares "" and the amq.* exchanges itself;
// an empty exchange in a binding means the service's.
func (fm *fileModel) checkQueueReferences(q *kombuv1.Queue) error {
	for _, b := range q.GetBindings() {
		if name := b.GetExchange(); !fm.declares(name) {
			return fmt.Errorf("binding to exchange %q, which is not declared (declare it in the file's (kombu.v1.topology) or on a service)", name)
		}
	}
	if name := q.GetDeadLetterExchange(); !fm.declares(name) {
		return fmt.Errorf("dead_letter_exchange %q is not declared, so the broker would drop every dead letter (declare it in the file's (kombu.v1.topology) or on a service)", name)
	}
	return nil
}

// declares reports whether an exchange name in a binding or dead-letter
// setting is one the file or the broker declares.
func (fm *fileModel) declares(name string) bool {
	return name == "" || strings.HasPrefix(name, "amq.") || fm.exchanges[name] != nil
}

// exchangeType returns the type of a declared or broker-owned exchange, and
// false for one the file does not know.
func (fm *fileModel) exchangeType(name string) (kombuv1.ExchangeType, bool) {
	if ex := fm.exchanges[name]; ex != nil {
		return ex.GetType(), true
	}
	t, ok := brokerExchanges[name]
	return t, ok
}

// brokerExchanges are the exchanges every RabbitMQ declares, by type.
var brokerExchanges = map[string]kombuv1.ExchangeType{
	"amq.direct":  kombuv1.ExchangeType_EXCHANGE_TYPE_DIRECT,
	"amq.topic":   kombuv1.ExchangeType_EXCHANGE_TYPE_TOPIC,
	"amq.fanout":  kombuv1.ExchangeType_EXCHANGE_TYPE_FANOUT,
	"amq.headers": kombuv1.ExchangeType_EXCHANGE_TYPE_HEADERS,
	"amq.match":   kombuv1.ExchangeType_EXCHANGE_TYPE_HEADERS,
}

// checkTopicPatterns reports a binding key to a topic exchange that is not
// a pattern: RabbitMQ splits it into dot-separated words and treats "*" and
// "#" as wildcards only as whole words, so "invoice.**" or "invoice#"
// matches nothing but that very text.
func (fm *fileModel) checkTopicPatterns(bindings []*kombuv1.Binding) error {
	for _, b := range bindings {
		if t, _ := fm.exchangeType(b.GetExchange()); t != kombuv1.ExchangeType_EXCHANGE_TYPE_TOPIC {
			continue
		}
		for _, word := range strings.Split(b.GetRoutingKey(), ".") {
			if word != "*" && word != "#" && strings.ContainsAny(word, "*#") {
				return fmt.Errorf("binding key %q to topic exchange %q: %q is not a word; \"*\" (one word) and \"#\" (any number of words) stand alone between dots, as in \"invoice.*\"",
					b.GetRoutingKey(), b.GetExchange(), word)
			}
		}
	}
	return nil
}

// buildService builds the model of service s, whose exchange is ex.
func (fm *fileModel) buildService(s *protogen.Service, ex *kombuv1.Exchange) (*service, error) {
	svc := &service{proto: s, exchange: ex, exchanges: []*kombuv1.Exchange{ex}}
	for _, tex := range fm.topology.GetExchanges() {
		svc.addExchange(fm.exchanges[tex.GetName()])
	}
	byName := make(map[string]*queue)
	goNames := make(map[string]*protogen.Method)
	for _, m := range s.Methods {
		// protogen camel-cases method names, so "place_order" and
		// "PlaceOrder" would both become Go methods named PlaceOrder.
		if other := goNames[m.GoName]; other != nil {
			return nil, methodError(m, "its Go name %s is also the Go name of method %s; rename one of them", m.GoName, other.Desc.Name())
		}
		goNames[m.GoName] = m
		task, err := newCeleryTask(m)
		if err != nil {
			return nil, err
		}
		if task != nil {
			svc.tasks = append(svc.tasks, task)
			continue
		}
		r, err := newRoute(m)
		if err != nil {
			return nil, err
		}
		if err := fm.addRouteQueue(svc, byName, r); err != nil {
			return nil, err
		}
		svc.routes = append(svc.routes, r)
	}
	for _, tq := range fm.topology.GetQueues() {
		decl, bindings := splitQueue(tq, svc.exchange.GetName(), "")
		if err := fm.checkTopicPatterns(bindings); err != nil {
			return nil, topologyError(fm.file, "queue %q: %v", tq.GetName(), err)
		}
		if q := byName[tq.GetName()]; q != nil {
			if field := merge(q.decl, decl); field != "" {
				return nil, topologyError(fm.file, "queue %q is declared with a different %s by service %s, method %s",
					tq.GetName(), field, s.Desc.Name(), q.routes[0].method.Desc.Name())
			}
			q.addBindings(bindings)
			continue
		}
		q := &queue{decl: decl}
		q.addBindings(bindings)
		byName[tq.GetName()] = q
		svc.queues = append(svc.queues, q)
	}
	fm.addBoundExchanges(svc)
	// The queues are complete only now: a shared queue has every route's
	// bindings and settings, and the file topology's.
	for _, r := range svc.routes {
		if err := fm.checkRouteReachesQueue(svc, r); err != nil {
			return nil, err
		}
		if p := r.opts.GetPriority(); p > 0 && r.queue.decl.GetMaxPriority() == 0 {
			return nil, methodError(r.method, "priority %d needs queue %s to have max_priority; without it the broker ignores message priorities", p, describeQueue(r.queue.decl))
		}
	}
	return svc, nil
}

// checkRouteReachesQueue reports a route whose messages its own queue would
// never receive: no binding of the queue to the service's exchange matches
// the route's routing key, as the exchange's type matches keys. A headers
// exchange routes on the headers each publish carries, which the plugin
// cannot know.
func (fm *fileModel) checkRouteReachesQueue(svc *service, r *route) error {
	ex := svc.exchange
	var keys []string
	for _, b := range r.queue.bindings {
		if b.GetExchange() != ex.GetName() {
			continue
		}
		switch ex.GetType() {
		case kombuv1.ExchangeType_EXCHANGE_TYPE_HEADERS, kombuv1.ExchangeType_EXCHANGE_TYPE_FANOUT:
			return nil
		case kombuv1.ExchangeType_EXCHANGE_TYPE_TOPIC:
			if topic.Match(topic.Split(b.GetRoutingKey()), r.key) {
				return nil
			}
		default:
			if b.GetRoutingKey() == r.key {
				return nil
			}
		}
		keys = append(keys, strconv.Quote(b.GetRoutingKey()))
	}
	bound := "it has no binding to that exchange"
	if len(keys) > 0 {
		bound = "bound with " + strings.Join(keys, ", ")
	}
	return methodError(r.method, "routing key %q does not reach the route's own queue %s through %s exchange %q (%s), so the broker would drop every message",
		r.key, describeQueue(r.queue.decl), exchangeTypeName(ex.GetType()), ex.GetName(), bound)
}

// exchangeTypeName is the lower-case name of an exchange type.
func exchangeTypeName(t kombuv1.ExchangeType) string {
	if t == kombuv1.ExchangeType_EXCHANGE_TYPE_UNSPECIFIED {
		t = kombuv1.ExchangeType_EXCHANGE_TYPE_DIRECT
	}
	return strings.ToLower(strings.TrimPrefix(t.String(), "EXCHANGE_TYPE_"))
}

// newRoute reads and checks the route option of m.
func newRoute(m *protogen.Method) (*route, error) {
	if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
		return nil, methodError(m, "streaming methods are not supported; a route publishes one message")
	}
	r := &route{method: m, opts: extension[*kombuv1.Route](m.Desc.Options(), kombuv1.E_Route)}
	if r.opts == nil {
		r.opts = &kombuv1.Route{}
	}
	if r.replies() && r.opts.Queue != nil && r.opts.Queue.GetName() == "" {
		return nil, methodError(m, "a request/reply route cannot use a broadcast queue (queue: {}): every consumer would answer")
	}
	r.key = r.opts.GetRoutingKey()
	if r.key == "" {
		r.key = r.fullName()
	}
	switch s := r.opts.GetSerializer(); {
	case s == "raw" || s == "text":
		return nil, methodError(m, "serializer %q sends bytes or text, not proto messages (want one of %s)", s, strings.Join(serializers, ", "))
	case s != "" && !slices.Contains(serializers, s):
		return nil, methodError(m, "unknown serializer %q (want one of %s)", s, strings.Join(serializers, ", "))
	}
	if c := r.opts.GetCompression(); c != "" && !slices.Contains(compressions, c) {
		return nil, methodError(m, "unknown compression %q (want one of %s)", c, strings.Join(compressions, ", "))
	}
	if p := r.opts.GetPriority(); p > 255 {
		return nil, methodError(m, "priority %d is more than 255", p)
	}
	if err := checkDeliveryMode(r.opts.GetDeliveryMode()); err != nil {
		return nil, methodError(m, "%v", err)
	}
	var err error
	if r.expiration, err = parseDuration("expiration", r.opts.GetExpiration()); err != nil {
		return nil, methodError(m, "%v", err)
	}
	return r, nil
}

// addRouteQueue finds or creates the queue route r is consumed from and
// adds r to it.
func (fm *fileModel) addRouteQueue(svc *service, byName map[string]*queue, r *route) error {
	m := r.method
	opt := r.opts.GetQueue()
	if opt == nil {
		// The default: a shared work queue named after the method.
		opt = &kombuv1.Queue{Name: r.fullName()}
	}
	broadcast := opt.GetName() == ""
	if err := checkQueue(opt, broadcast); err != nil {
		return methodError(m, "queue %s: %v", describeQueue(opt), err)
	}
	if err := fm.checkQueueReferences(opt); err != nil {
		return methodError(m, "queue %s: %v", describeQueue(opt), err)
	}
	decl, bindings := splitQueue(opt, svc.exchange.GetName(), r.key)
	if err := fm.checkTopicPatterns(bindings); err != nil {
		return methodError(m, "queue %s: %v", describeQueue(opt), err)
	}
	if broadcast {
		decl.Exclusive, decl.AutoDelete = true, true
	}
	q := byName[opt.GetName()]
	if q == nil || broadcast {
		q = &queue{decl: decl}
		svc.queues = append(svc.queues, q)
		if !broadcast {
			byName[opt.GetName()] = q
		}
	} else {
		first := q.routes[0].method
		if first.Input != m.Input {
			return methodError(m, "queue %q is shared with method %s, whose request type is %s, but this method's is %s; routes on one queue must publish the same message type",
				opt.GetName(), first.Desc.Name(), first.Input.Desc.FullName(), m.Input.Desc.FullName())
		}
		if field := merge(q.decl, decl); field != "" {
			return methodError(m, "queue %q is declared with a different %s by method %s", opt.GetName(), field, first.Desc.Name())
		}
	}
	q.addBindings(bindings)
	q.routes = append(q.routes, r)
	r.queue = q
	return nil
}

// splitQueue separates a queue option into its settings and its bindings,
// applying the binding defaults: an empty binding exchange is the service's
// exchange, and a queue without bindings is bound to the service's exchange
// with its own routing key or else routeKey (none for a topology queue
// without a routing key).
func splitQueue(opt *kombuv1.Queue, serviceExchange, routeKey string) (*kombuv1.Queue, []*kombuv1.Binding) {
	decl := proto.CloneOf(opt)
	decl.RoutingKey, decl.Bindings = "", nil
	var bindings []*kombuv1.Binding
	for _, b := range opt.GetBindings() {
		b = proto.CloneOf(b)
		if b.GetExchange() == "" {
			b.Exchange = serviceExchange
		}
		bindings = append(bindings, b)
	}
	if len(bindings) == 0 {
		key := opt.GetRoutingKey()
		if key == "" {
			key = routeKey
		}
		if key != "" {
			bindings = append(bindings, &kombuv1.Binding{Exchange: serviceExchange, RoutingKey: key})
		}
	}
	return decl, bindings
}

// addBindings adds the bindings the queue does not have yet.
func (q *queue) addBindings(bindings []*kombuv1.Binding) {
	for _, b := range bindings {
		if !slices.ContainsFunc(q.bindings, func(have *kombuv1.Binding) bool { return proto.Equal(have, b) }) {
			q.bindings = append(q.bindings, b)
		}
	}
}

// addBoundExchanges adds to the service's topology the other services'
// exchanges its queues are bound to or dead-letter to, so that declaring the
// topology never binds to an exchange that does not exist yet, and dead
// letters have somewhere to go.
func (fm *fileModel) addBoundExchanges(svc *service) {
	for _, q := range svc.queues {
		for _, name := range q.exchangeNames() {
			if ex := fm.exchanges[name]; ex != nil {
				svc.addExchange(ex)
			}
		}
	}
}

// exchangeNames returns the exchanges the queue is bound to, then its
// dead-letter exchange.
func (q *queue) exchangeNames() []string {
	var names []string
	for _, b := range q.bindings {
		names = append(names, b.GetExchange())
	}
	if dlx := q.decl.GetDeadLetterExchange(); dlx != "" {
		names = append(names, dlx)
	}
	return names
}

// declarations returns what a producer of route r declares before it
// publishes, as indexes into the service's exchanges and queues: the
// route's queue with the exchanges it is bound to, and where its dead
// letters go (the dead-letter exchange and the queues bound to it, and
// theirs in turn), so that neither a message waiting for its first consumer
// nor one that expires before it is dropped. The service's own exchange is
// left out (the producer declares it anyway), as are queues that belong to
// their consumers. Nothing at all for a route whose queue is one of those.
func (svc *service) declarations(r *route) (exchanges, queues []int) {
	if r.queue.consumersOwn() {
		return nil, nil
	}
	want := map[*queue]bool{r.queue: true}
	wantEx := map[string]bool{}
	for work := []*queue{r.queue}; len(work) > 0; work = work[1:] {
		for _, name := range work[0].exchangeNames() {
			wantEx[name] = true
		}
		dlx := work[0].decl.GetDeadLetterExchange()
		for _, q := range svc.queues {
			if dlx == "" || want[q] || q.consumersOwn() {
				continue
			}
			if slices.ContainsFunc(q.bindings, func(b *kombuv1.Binding) bool { return b.GetExchange() == dlx }) {
				want[q] = true
				work = append(work, q)
			}
		}
	}
	for i, ex := range svc.exchanges[1:] {
		if wantEx[ex.GetName()] {
			exchanges = append(exchanges, i+1)
		}
	}
	for i, q := range svc.queues {
		if want[q] {
			queues = append(queues, i)
		}
	}
	return exchanges, queues
}

// addExchange adds ex to the service's topology unless it is there.
func (svc *service) addExchange(ex *kombuv1.Exchange) {
	if !slices.Contains(svc.exchanges, ex) {
		svc.exchanges = append(svc.exchanges, ex)
	}
}

// checkExchange checks the enums of an exchange declaration.
func checkExchange(ex *kombuv1.Exchange) error {
	if _, ok := exchangeTypes[ex.GetType()]; !ok {
		return fmt.Errorf("unknown exchange type %d", ex.GetType())
	}
	return checkDeliveryMode(ex.GetDeliveryMode())
}

func checkDeliveryMode(m kombuv1.DeliveryMode) error {
	if _, ok := deliveryModes[m]; !ok {
		return fmt.Errorf("unknown delivery mode %d", m)
	}
	return nil
}

// checkQueue checks a queue declaration's settings; broadcast says it is a
// route's server-named queue, which is always exclusive.
func checkQueue(q *kombuv1.Queue, broadcast bool) error {
	for _, d := range []struct{ field, value string }{
		{"message_ttl", q.GetMessageTtl()},
		{"expires", q.GetExpires()},
	} {
		if _, err := parseDuration(d.field, d.value); err != nil {
			return err
		}
	}
	if n := q.GetMaxLength(); n < 0 {
		return fmt.Errorf("max_length %d is negative", n)
	}
	if n := q.GetMaxLengthBytes(); n < 0 {
		return fmt.Errorf("max_length_bytes %d is negative", n)
	}
	if p := q.GetMaxPriority(); p > 255 {
		return fmt.Errorf("max_priority %d is more than 255", p)
	}
	if _, ok := queueTypes[q.GetType()]; !ok {
		return fmt.Errorf("unknown queue type %d", q.GetType())
	}
	if q.GetType() == kombuv1.QueueType_QUEUE_TYPE_QUORUM || q.GetType() == kombuv1.QueueType_QUEUE_TYPE_STREAM {
		typ := strings.ToLower(strings.TrimPrefix(q.GetType().String(), "QUEUE_TYPE_"))
		switch {
		case broadcast:
			return fmt.Errorf("a broadcast queue (queue: {}) is exclusive, so it cannot be a %s queue", typ)
		case q.GetExclusive():
			return fmt.Errorf("a %s queue cannot be exclusive", typ)
		case q.Durable != nil && !q.GetDurable():
			return fmt.Errorf("a %s queue must be durable", typ)
		}
	}
	if q.GetType() == kombuv1.QueueType_QUEUE_TYPE_STREAM && q.GetMaxPriority() > 0 {
		return errors.New("a stream queue cannot have max_priority")
	}
	return nil
}

// parseDuration parses a duration option. Brokers take these in whole
// milliseconds, so anything finer, or negative, is a mistake.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s %q is not a Go duration such as \"30s\"", field, s)
	case d < 0:
		return 0, fmt.Errorf("%s %q is negative", field, s)
	case d%time.Millisecond != 0:
		return 0, fmt.Errorf("%s %q is not a whole number of milliseconds", field, s)
	}
	return d, nil
}

// merge copies into dst the fields src sets, other than name, routing_key
// and bindings, and returns the name of the first field (in declaration
// order) that both set to different values, or "" if they agree. Map fields
// merge key by key. Proto3 leaves unset scalars at zero, so a declaration
// that only names a queue agrees with any other.
func merge(dst, src proto.Message) protoreflect.Name {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	fields := s.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.Name() == "name" || fd.Name() == "routing_key" || fd.Name() == "bindings" || !s.Has(fd):
		case fd.IsMap():
			dm := d.Mutable(fd).Map()
			conflict := false
			s.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				if dm.Has(k) && !dm.Get(k).Equal(v) {
					conflict = true
					return false
				}
				dm.Set(k, v)
				return true
			})
			if conflict {
				return fd.Name()
			}
		case d.Has(fd) && !d.Get(fd).Equal(s.Get(fd)):
			return fd.Name()
		default:
			d.Set(fd, s.Get(fd))
		}
	}
	return ""
}

// Errors name the proto file and the service and method (or the file
// topology) they are about, as protoc and buf print them verbatim.

func methodError(m *protogen.Method, format string, args ...any) error {
	return fmt.Errorf("%s: service %s, method %s: %s", m.Desc.ParentFile().Path(), m.Parent.Desc.Name(), m.Desc.Name(), fmt.Sprintf(format, args...))
}

func serviceError(s *protogen.Service, format string, args ...any) error {
	return fmt.Errorf("%s: service %s: %s", s.Desc.ParentFile().Path(), s.Desc.Name(), fmt.Sprintf(format, args...))
}

func topologyError(f *protogen.File, format string, args ...any) error {
	return fmt.Errorf("%s: topology: %s", f.Desc.Path(), fmt.Sprintf(format, args...))
}
