package generator

import (
	"google.golang.org/protobuf/compiler/protogen"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// This file gives the model to tools that declare a proto file's topology
// at run time (the kombu command's declare verb) instead of generating code
// for it: the same checks and defaults as the generated XTopology
// functions, as runtime values rather than Go source.

// ServiceTopology is the topology of one service of a proto file, as its
// generated XTopology function returns it.
type ServiceTopology struct {
	Service  string // the service's full proto name
	Topology kombu.Topology
}

// FileTopologies checks file's kombu options as the plugin does and returns
// each service's topology, in file order. A file without services yields
// none.
func FileTopologies(file *protogen.File) ([]ServiceTopology, error) {
	services, err := buildFile(file)
	if err != nil {
		return nil, err
	}
	out := make([]ServiceTopology, 0, len(services))
	for _, s := range services {
		var t kombu.Topology
		for _, ex := range s.exchanges {
			t.Exchanges = append(t.Exchanges, exchangeValue(ex))
		}
		for _, q := range s.queues {
			t.Queues = append(t.Queues, queueValue(q))
		}
		out = append(out, ServiceTopology{Service: fullName(s), Topology: t})
	}
	return out, nil
}

var (
	exchangeTypeValues = map[kombuv1.ExchangeType]kombu.ExchangeType{
		kombuv1.ExchangeType_EXCHANGE_TYPE_DIRECT:  kombu.ExchangeDirect,
		kombuv1.ExchangeType_EXCHANGE_TYPE_TOPIC:   kombu.ExchangeTopic,
		kombuv1.ExchangeType_EXCHANGE_TYPE_FANOUT:  kombu.ExchangeFanout,
		kombuv1.ExchangeType_EXCHANGE_TYPE_HEADERS: kombu.ExchangeHeaders,
	}
	deliveryModeValues = map[kombuv1.DeliveryMode]kombu.DeliveryMode{
		kombuv1.DeliveryMode_DELIVERY_MODE_PERSISTENT: kombu.Persistent,
		kombuv1.DeliveryMode_DELIVERY_MODE_TRANSIENT:  kombu.Transient,
	}
	queueTypeValues = map[kombuv1.QueueType]kombu.QueueType{
		kombuv1.QueueType_QUEUE_TYPE_CLASSIC: kombu.QueueClassic,
		kombuv1.QueueType_QUEUE_TYPE_QUORUM:  kombu.QueueQuorum,
		kombuv1.QueueType_QUEUE_TYPE_STREAM:  kombu.QueueStream,
	}
)

// exchangeValue is exchangeLit as a value.
func exchangeValue(ex *kombuv1.Exchange) kombu.Exchange {
	return kombu.Exchange{
		Name:         ex.GetName(),
		Type:         exchangeTypeValues[ex.GetType()],
		Transient:    ex.Durable != nil && !ex.GetDurable(),
		AutoDelete:   ex.GetAutoDelete(),
		Internal:     ex.GetInternal(),
		DeliveryMode: deliveryModeValues[ex.GetDeliveryMode()],
		Arguments:    argumentsValue(ex.GetArguments()),
	}
}

// queueValue is queueLit as a value.
func queueValue(q *queue) kombu.Queue {
	d := q.decl
	out := kombu.Queue{
		Name:                 d.GetName(),
		Transient:            d.Durable != nil && !d.GetDurable(),
		Exclusive:            d.GetExclusive(),
		AutoDelete:           d.GetAutoDelete(),
		MaxLength:            d.GetMaxLength(),
		MaxLengthBytes:       d.GetMaxLengthBytes(),
		MaxPriority:          uint8(d.GetMaxPriority()),
		DeadLetterExchange:   d.GetDeadLetterExchange(),
		DeadLetterRoutingKey: d.GetDeadLetterRoutingKey(),
		Type:                 queueTypeValues[d.GetType()],
		DeliveryLimit:        d.GetDeliveryLimit(),
		Arguments:            argumentsValue(d.GetArguments()),
	}
	// checkQueue has parsed the durations already.
	out.MessageTTL, _ = parseDuration("message_ttl", d.GetMessageTtl())
	out.Expires, _ = parseDuration("expires", d.GetExpires())
	for _, b := range q.bindings {
		out.Bindings = append(out.Bindings, kombu.Binding{
			Exchange:   b.GetExchange(),
			RoutingKey: b.GetRoutingKey(),
			Arguments:  argumentsValue(b.GetArguments()),
		})
	}
	return out
}

func argumentsValue(args map[string]string) map[string]any {
	if len(args) == 0 {
		return nil
	}
	out := make(map[string]any, len(args))
	for k, v := range args {
		out[k] = v
	}
	return out
}
