package prototopology

import (
	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/generator"
	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The runtime value of each option enum: what the generator's literal.go
// prints as Go source.
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

func topologyValue(m generator.ServiceModel) kombu.Topology {
	var t kombu.Topology
	for _, ex := range m.Exchanges {
		t.Exchanges = append(t.Exchanges, exchangeValue(ex))
	}
	for _, q := range m.Queues {
		t.Queues = append(t.Queues, queueValue(q))
	}
	return t
}

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

func queueValue(q generator.QueueModel) kombu.Queue {
	d := q.Decl
	out := kombu.Queue{
		Name:                 d.GetName(),
		Transient:            d.Durable != nil && !d.GetDurable(),
		Exclusive:            d.GetExclusive(),
		AutoDelete:           d.GetAutoDelete(),
		MessageTTL:           q.MessageTTL,
		Expires:              q.Expires,
		MaxLength:            d.GetMaxLength(),
		MaxLengthBytes:       d.GetMaxLengthBytes(),
		MaxPriority:          uint8(d.GetMaxPriority()),
		DeadLetterExchange:   d.GetDeadLetterExchange(),
		DeadLetterRoutingKey: d.GetDeadLetterRoutingKey(),
		Type:                 queueTypeValues[d.GetType()],
		DeliveryLimit:        d.GetDeliveryLimit(),
		Arguments:            argumentsValue(d.GetArguments()),
	}
	for _, b := range q.Bindings {
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
