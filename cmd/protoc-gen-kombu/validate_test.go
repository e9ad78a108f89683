package main

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
)

// Each case breaks one declaration of the golden test's orders.proto and
// checks the plugin's error: it must name the file, the service and method
// (or the file topology) and the problem, since protoc and buf print it as
// it is.
func TestValidation(t *testing.T) {
	const file = "kombutest/v1/orders.proto"
	tests := []struct {
		name   string
		file   string // the proto file mutate edits; empty: orders.proto
		mutate func(f *descriptorpb.FileDescriptorProto)
		want   string
	}{
		{
			name:   "celery task without a name",
			file:   "kombutest/v1/tasks.proto",
			mutate: editCeleryTask("Arithmetic", "Add", func(c *kombuv1.CeleryTask) { c.Name = "" }),
			want:   `kombutest/v1/tasks.proto: service Arithmetic, method Add: celery_task needs a name (the task's registered name, e.g. "proj.tasks.add")`,
		},
		{
			name:   "celery task result ignored with a reply type",
			file:   "kombutest/v1/tasks.proto",
			mutate: editCeleryTask("Arithmetic", "Add", func(c *kombuv1.CeleryTask) { c.Result = kombuv1.CeleryResult_CELERY_RESULT_IGNORE }),
			want:   `kombutest/v1/tasks.proto: service Arithmetic, method Add: celery_task result IGNORE needs the method to return google.protobuf.Empty, not kombutest.v1.AddReply`,
		},
		{
			name:   "celery task result awaited without a reply type",
			file:   "kombutest/v1/tasks.proto",
			mutate: editCeleryTask("Arithmetic", "Log", func(c *kombuv1.CeleryTask) { c.Result = kombuv1.CeleryResult_CELERY_RESULT_REPLY }),
			want:   `kombutest/v1/tasks.proto: service Arithmetic, method Log: celery_task result REPLY needs a reply type other than google.protobuf.Empty`,
		},
		{
			name:   "celery task name with white space",
			file:   "kombutest/v1/tasks.proto",
			mutate: editCeleryTask("Arithmetic", "Add", func(c *kombuv1.CeleryTask) { c.Name = "proj tasks" }),
			want:   `kombutest/v1/tasks.proto: service Arithmetic, method Add: celery_task name "proj tasks" contains white space`,
		},
		{
			name:   "celery task that is also a route",
			file:   "kombutest/v1/tasks.proto",
			mutate: editRoute("Arithmetic", "Add", func(r *kombuv1.Route) {}),
			want:   `kombutest/v1/tasks.proto: service Arithmetic, method Add: a method is either a route or a Celery task, not both (it has route and celery_task options)`,
		},
		{
			name:   "unknown serializer",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Serializer = "xml" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: unknown serializer "xml" (want one of protobuf, json, protojson, msgpack, yaml)`,
		},
		{
			name:   "serializer for bytes",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Serializer = "raw" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: serializer "raw" sends bytes or text, not proto messages (want one of protobuf, json, protojson, msgpack, yaml)`,
		},
		{
			name:   "undeclared dead_letter_exchange",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.DeadLetterExchange = "orders.dlq" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": dead_letter_exchange "orders.dlq" is not declared, so the broker would drop every dead letter (declare it in the file's (kombu.v1.topology) or on a service)`,
		},
		{
			name:   "undeclared dead_letter_exchange in the topology",
			mutate: editTopology(func(topo *kombuv1.Topology) { topo.Queues[1].DeadLetterExchange = "audit.dlx" }),
			want:   `kombutest/v1/orders.proto: topology: queue "orders.audit": dead_letter_exchange "audit.dlx" is not declared, so the broker would drop every dead letter (declare it in the file's (kombu.v1.topology) or on a service)`,
		},
		{
			name:   "routing key that a topic binding does not match",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.RoutingKey = "orders.placed" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: routing key "orders.placed" does not reach the route's own queue "orders.work" through topic exchange "orders" (bound with "order.placed", "order.amended", "order.retry.*"), so the broker would drop every message`,
		},
		{
			name: "routing key that a topic pattern does not match",
			mutate: editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) {
				r.RoutingKey = "invoices.issued"
				r.Queue.RoutingKey = "invoice.*"
			}),
			want: `kombutest/v1/orders.proto: service Fulfilment, method ShipOrder: routing key "invoices.issued" does not reach the route's own queue "orders.shipping" through topic exchange "orders" (bound with "invoice.*"), so the broker would drop every message`,
		},
		{
			name:   "routing key that a direct binding does not match",
			file:   "kombutest/v1/pricing.proto",
			mutate: editRoute("Pricing", "Convert", func(r *kombuv1.Route) { r.Queue.RoutingKey = "pricing.converts" }),
			want:   `kombutest/v1/pricing.proto: service Pricing, method Convert: routing key "pricing.convert" does not reach the route's own queue "kombutest.pricing.convert" through direct exchange "kombutest.pricing" (bound with "pricing.converts"), so the broker would drop every message`,
		},
		{
			name: "queue not bound to the route's exchange",
			mutate: editRoute("Orders", "ArchiveOrder", func(r *kombuv1.Route) {
				r.Queue = &kombuv1.Queue{Name: "orders.archive", Bindings: []*kombuv1.Binding{{Exchange: "orders.dlx"}}}
			}),
			want: `kombutest/v1/orders.proto: service Orders, method ArchiveOrder: routing key "kombutest.v1.Orders.ArchiveOrder" does not reach the route's own queue "orders.archive" through topic exchange "orders" (it has no binding to that exchange), so the broker would drop every message`,
		},
		{
			name:   "priority on a queue without max_priority",
			mutate: editRoute("Orders", "ArchiveOrder", func(r *kombuv1.Route) { r.Priority = 3 }),
			want:   `kombutest/v1/orders.proto: service Orders, method ArchiveOrder: priority 3 needs queue "kombutest.v1.Orders.ArchiveOrder" to have max_priority; without it the broker ignores message priorities`,
		},
		{
			name:   "priority on a broadcast queue",
			mutate: editRoute("Orders", "InvalidateCache", func(r *kombuv1.Route) { r.Priority = 1 }),
			want:   `kombutest/v1/orders.proto: service Orders, method InvalidateCache: priority 1 needs queue (broadcast) to have max_priority; without it the broker ignores message priorities`,
		},
		{
			name:   "wildcard inside a word",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.Bindings[0].RoutingKey = "order.**" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": binding key "order.**" to topic exchange "orders": "**" is not a word; "*" (one word) and "#" (any number of words) stand alone between dots, as in "invoice.*"`,
		},
		{
			name:   "wildcard inside a word of a default binding",
			mutate: editRoute("Orders", "ArchiveOrder", func(r *kombuv1.Route) { r.RoutingKey = "order.archived#" }),
			want:   `kombutest/v1/orders.proto: service Orders, method ArchiveOrder: queue "kombutest.v1.Orders.ArchiveOrder": binding key "order.archived#" to topic exchange "orders": "archived#" is not a word; "*" (one word) and "#" (any number of words) stand alone between dots, as in "invoice.*"`,
		},
		{
			name:   "wildcard inside a word in the topology",
			mutate: editTopology(func(topo *kombuv1.Topology) { topo.Queues[1].Bindings[0].RoutingKey = "audit#" }),
			want:   `kombutest/v1/orders.proto: topology: queue "orders.audit": binding key "audit#" to topic exchange "audit": "audit#" is not a word; "*" (one word) and "#" (any number of words) stand alone between dots, as in "invoice.*"`,
		},
		{
			name:   "wildcard inside a word, to a broker's topic exchange",
			mutate: editTopology(func(topo *kombuv1.Topology) { topo.Queues[1].Bindings[2].RoutingKey = "orders.*x" }),
			want:   `kombutest/v1/orders.proto: topology: queue "orders.audit": binding key "orders.*x" to topic exchange "amq.topic": "*x" is not a word; "*" (one word) and "#" (any number of words) stand alone between dots, as in "invoice.*"`,
		},
		{
			name:   "unknown compression",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Compression = "lz4" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: unknown compression "lz4" (want one of zlib, gzip, bzip2, bzip, lzma, xz, brotli, zstd, zstandard)`,
		},
		{
			name:   "unparsable expiration",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Expiration = "10 seconds" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: expiration "10 seconds" is not a Go duration such as "30s"`,
		},
		{
			name:   "negative expiration",
			mutate: editRoute("Orders", "AmendOrder", func(r *kombuv1.Route) { r.Expiration = "-5s" }),
			want:   `kombutest/v1/orders.proto: service Orders, method AmendOrder: expiration "-5s" is negative`,
		},
		{
			name:   "expiration finer than a millisecond",
			mutate: editRoute("Orders", "AmendOrder", func(r *kombuv1.Route) { r.Expiration = "1500us" }),
			want:   `kombutest/v1/orders.proto: service Orders, method AmendOrder: expiration "1500us" is not a whole number of milliseconds`,
		},
		{
			name:   "unparsable message_ttl",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.MessageTtl = "a week" }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": message_ttl "a week" is not a Go duration such as "30s"`,
		},
		{
			name:   "negative expires",
			mutate: editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) { r.Queue.Expires = "-1m" }),
			want:   `kombutest/v1/orders.proto: service Fulfilment, method ShipOrder: queue "orders.shipping": expires "-1m" is negative`,
		},
		{
			name: "binding to an undeclared exchange",
			mutate: editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) {
				r.Queue.Bindings = []*kombuv1.Binding{{Exchange: "nowhere", RoutingKey: "x"}}
			}),
			want: `kombutest/v1/orders.proto: service Fulfilment, method ShipOrder: queue "orders.shipping": binding to exchange "nowhere", which is not declared (declare it in the file's (kombu.v1.topology) or on a service)`,
		},
		{
			name:   "routes of different types on one queue",
			mutate: editRoute("Orders", "ArchiveOrder", func(r *kombuv1.Route) { r.Queue = &kombuv1.Queue{Name: "orders.work"} }),
			want:   `kombutest/v1/orders.proto: service Orders, method ArchiveOrder: queue "orders.work" is shared with method PlaceOrder, whose request type is kombutest.v1.OrderPlaced, but this method's is kombutest.v1.OrderArchived; routes on one queue must publish the same message type`,
		},
		{
			name:   "conflicting settings of a shared queue",
			mutate: editRoute("Orders", "AmendOrder", func(r *kombuv1.Route) { r.Queue.MaxPriority = 5 }),
			want:   `kombutest/v1/orders.proto: service Orders, method AmendOrder: queue "orders.work" is declared with a different max_priority by method PlaceOrder`,
		},
		{
			name:   "max_priority above 255",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.MaxPriority = 256 }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": max_priority 256 is more than 255`,
		},
		{
			name:   "priority above 255",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Priority = 1000 }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: priority 1000 is more than 255`,
		},
		{
			name:   "negative max_length",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.MaxLength = -1 }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": max_length -1 is negative`,
		},
		{
			name:   "exclusive quorum queue",
			mutate: editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) { r.Queue.Exclusive = true }),
			want:   `kombutest/v1/orders.proto: service Fulfilment, method ShipOrder: queue "orders.shipping": a quorum queue cannot be exclusive`,
		},
		{
			name:   "exclusive stream queue",
			mutate: editRoute("Fulfilment", "TrackOrder", func(r *kombuv1.Route) { r.Queue.Exclusive = true }),
			want:   `kombutest/v1/orders.proto: service Fulfilment, method TrackOrder: queue "orders.tracking": a stream queue cannot be exclusive`,
		},
		{
			name:   "transient quorum queue",
			mutate: editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) { r.Queue.Durable = proto.Bool(false) }),
			want:   `kombutest/v1/orders.proto: service Fulfilment, method ShipOrder: queue "orders.shipping": a quorum queue must be durable`,
		},
		{
			name:   "broadcast quorum queue",
			mutate: editRoute("Orders", "InvalidateCache", func(r *kombuv1.Route) { r.Queue.Type = kombuv1.QueueType_QUEUE_TYPE_QUORUM }),
			want:   `kombutest/v1/orders.proto: service Orders, method InvalidateCache: queue (broadcast): a broadcast queue (queue: {}) is exclusive, so it cannot be a quorum queue`,
		},
		{
			name:   "max_priority on a stream queue",
			mutate: editRoute("Fulfilment", "TrackOrder", func(r *kombuv1.Route) { r.Queue.MaxPriority = 10 }),
			want:   `kombutest/v1/orders.proto: service Fulfilment, method TrackOrder: queue "orders.tracking": a stream queue cannot have max_priority`,
		},
		{
			name:   "unknown queue type",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.Type = 42 }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: queue "orders.work": unknown queue type 42`,
		},
		{
			name:   "unknown delivery mode",
			mutate: editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.DeliveryMode = 7 }),
			want:   `kombutest/v1/orders.proto: service Orders, method PlaceOrder: unknown delivery mode 7`,
		},
		{
			name: "request/reply on a broadcast queue",
			mutate: func(f *descriptorpb.FileDescriptorProto) {
				method(f, "Orders", "PlaceOrder").OutputType = proto.String(".kombutest.v1.OrderShipped")
				editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue = &kombuv1.Queue{} })(f)
			},
			want: `kombutest/v1/orders.proto: service Orders, method PlaceOrder: a request/reply route cannot use a broadcast queue (queue: {}): every consumer would answer`,
		},
		{
			name: "streaming",
			mutate: func(f *descriptorpb.FileDescriptorProto) {
				method(f, "Orders", "ArchiveOrder").ClientStreaming = proto.Bool(true)
			},
			want: `kombutest/v1/orders.proto: service Orders, method ArchiveOrder: streaming methods are not supported; a route publishes one message`,
		},
		{
			name: "methods with one Go name",
			mutate: func(f *descriptorpb.FileDescriptorProto) {
				method(f, "Orders", "ArchiveOrder").Name = proto.String("place_order")
			},
			want: `kombutest/v1/orders.proto: service Orders, method place_order: its Go name PlaceOrder is also the Go name of method PlaceOrder; rename one of them`,
		},
		{
			name:   "unknown exchange type",
			mutate: editExchange("Orders", func(ex *kombuv1.Exchange) { ex.Type = 9 }),
			want:   `kombutest/v1/orders.proto: service Orders: exchange "orders": unknown exchange type 9`,
		},
		{
			name: "topology binding to an undeclared exchange",
			mutate: editTopology(func(topo *kombuv1.Topology) {
				topo.Queues[0].Bindings[0].Exchange = "orders.dlx2"
			}),
			want: `kombutest/v1/orders.proto: topology: queue "orders.dead": binding to exchange "orders.dlx2", which is not declared (declare it in the file's (kombu.v1.topology) or on a service)`,
		},
		{
			name:   "topology duration",
			mutate: editTopology(func(topo *kombuv1.Topology) { topo.Queues[0].MessageTtl = "7d" }),
			want:   `kombutest/v1/orders.proto: topology: queue "orders.dead": message_ttl "7d" is not a Go duration such as "30s"`,
		},
		{
			name: "topology redeclares the service exchange differently",
			mutate: editTopology(func(topo *kombuv1.Topology) {
				topo.Exchanges = append(topo.Exchanges, &kombuv1.Exchange{Name: "orders", Type: kombuv1.ExchangeType_EXCHANGE_TYPE_FANOUT})
			}),
			want: `kombutest/v1/orders.proto: topology: exchange "orders" is declared twice with different type`,
		},
		{
			name: "topology queue declared twice",
			mutate: editTopology(func(topo *kombuv1.Topology) {
				topo.Queues = append(topo.Queues, &kombuv1.Queue{Name: "orders.dead"})
			}),
			want: `kombutest/v1/orders.proto: topology: queue "orders.dead" is declared twice`,
		},
		{
			name: "topology queue conflicts with a route's",
			mutate: editTopology(func(topo *kombuv1.Topology) {
				topo.Queues = append(topo.Queues, &kombuv1.Queue{Name: "orders.work", MaxLength: 5})
			}),
			want: `kombutest/v1/orders.proto: topology: queue "orders.work" is declared with a different max_length by service Orders, method PlaceOrder`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.file
			if name == "" {
				name = file
			}
			files := testFiles(t)
			for i, f := range files {
				if f.GetName() == name {
					f = proto.CloneOf(f)
					tt.mutate(f)
					files[i] = f
				}
			}
			req := request(files, "")
			req.FileToGenerate = []string{name}
			resp := run(t, req)
			if resp.GetError() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", resp.GetError(), tt.want)
			}
			if len(resp.GetFile()) != 0 {
				t.Errorf("generated %d files despite the error", len(resp.GetFile()))
			}
		})
	}
}

// TestValidDeclarationsPass makes sure the edits above break something: the
// unedited files generate without error, and so do edits close to theirs
// that can work.
func TestValidDeclarationsPass(t *testing.T) {
	if resp := run(t, request(testFiles(t), "")); resp.Error != nil {
		t.Fatal(resp.GetError())
	}
	tests := []struct {
		name, file string
		mutate     func(f *descriptorpb.FileDescriptorProto)
	}{
		{"msgpack", "kombutest/v1/orders.proto", editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Serializer = "msgpack" })},
		{"yaml", "kombutest/v1/orders.proto", editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Serializer = "yaml" })},
		{"protojson", "kombutest/v1/orders.proto", editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Serializer = "protojson" })},
		{"dead-letter exchange of the broker", "kombutest/v1/orders.proto", editRoute("Orders", "PlaceOrder", func(r *kombuv1.Route) { r.Queue.DeadLetterExchange = "amq.direct" })},
		{"dead-letter exchange of another service", "kombutest/v1/orders.proto", editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) { r.Queue.DeadLetterExchange = "orders" })},
		{"topic pattern", "kombutest/v1/orders.proto", editRoute("Fulfilment", "ShipOrder", func(r *kombuv1.Route) { r.RoutingKey = "order.shipped.eu.express" })},
		{"wildcards in a direct exchange's key", "kombutest/v1/pricing.proto", editRoute("Pricing", "Convert", func(r *kombuv1.Route) {
			r.RoutingKey, r.Queue.RoutingKey = "pricing.**", "pricing.**"
		})},
		{"fanout ignores the key", "kombutest/v1/events.proto", editRoute("Heartbeats", "Beat", func(r *kombuv1.Route) {
			r.Queue.Bindings = []*kombuv1.Binding{{RoutingKey: "anything"}}
		})},
		{"headers ignore the key", "kombutest/v1/events.proto", editRoute("Notifications", "Email", func(r *kombuv1.Route) { r.RoutingKey = "anything" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := testFiles(t)
			for i, f := range files {
				if f.GetName() == tt.file {
					f = proto.CloneOf(f)
					tt.mutate(f)
					files[i] = f
				}
			}
			req := request(files, "")
			req.FileToGenerate = []string{tt.file}
			if resp := run(t, req); resp.Error != nil {
				t.Error(resp.GetError())
			}
		})
	}
}

func method(f *descriptorpb.FileDescriptorProto, service, name string) *descriptorpb.MethodDescriptorProto {
	for _, s := range f.GetService() {
		if s.GetName() != service {
			continue
		}
		for _, m := range s.GetMethod() {
			if m.GetName() == name {
				return m
			}
		}
	}
	panic("no method " + service + "." + name)
}

// editRoute returns a mutation that sets a changed copy of the route option
// of method service.name, with proto.SetExtension.
func editRoute(service, name string, edit func(*kombuv1.Route)) func(*descriptorpb.FileDescriptorProto) {
	return func(f *descriptorpb.FileDescriptorProto) {
		m := method(f, service, name)
		r := &kombuv1.Route{}
		if m.GetOptions() == nil {
			m.Options = &descriptorpb.MethodOptions{}
		} else if have, ok := proto.GetExtension(m.GetOptions(), kombuv1.E_Route).(*kombuv1.Route); ok && have != nil {
			r = proto.CloneOf(have)
		}
		edit(r)
		proto.SetExtension(m.GetOptions(), kombuv1.E_Route, r)
	}
}

func editExchange(service string, edit func(*kombuv1.Exchange)) func(*descriptorpb.FileDescriptorProto) {
	return func(f *descriptorpb.FileDescriptorProto) {
		for _, s := range f.GetService() {
			if s.GetName() == service {
				ex := proto.CloneOf(proto.GetExtension(s.GetOptions(), kombuv1.E_Exchange).(*kombuv1.Exchange))
				edit(ex)
				proto.SetExtension(s.GetOptions(), kombuv1.E_Exchange, ex)
			}
		}
	}
}

func editTopology(edit func(*kombuv1.Topology)) func(*descriptorpb.FileDescriptorProto) {
	return func(f *descriptorpb.FileDescriptorProto) {
		topo := proto.CloneOf(proto.GetExtension(f.GetOptions(), kombuv1.E_Topology).(*kombuv1.Topology))
		edit(topo)
		proto.SetExtension(f.GetOptions(), kombuv1.E_Topology, topo)
	}
}

func editCeleryTask(service, name string, edit func(*kombuv1.CeleryTask)) func(*descriptorpb.FileDescriptorProto) {
	return func(f *descriptorpb.FileDescriptorProto) {
		m := method(f, service, name)
		c := proto.CloneOf(proto.GetExtension(m.GetOptions(), kombuv1.E_CeleryTask).(*kombuv1.CeleryTask))
		edit(c)
		proto.SetExtension(m.GetOptions(), kombuv1.E_CeleryTask, c)
	}
}
