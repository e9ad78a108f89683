package kombu

import "github.com/kombu-go/kombu/runtime/transport"

// Log lines about one message carry the same structured attributes, so
// that a log search by queue, exchange, message id or delivery tag finds
// every line about it: "queue", "exchange", "routing_key", "message_id"
// (when set), "correlation_id" (when set) and "delivery_tag". Both helpers
// return them followed by the line's own attributes, for a logger call's
// variadic arguments; they cost nothing unless a line is logged.

// deliveryLog returns a delivery's log attributes followed by extra.
func deliveryLog(d *transport.Delivery, extra ...any) []any {
	return messageLog(d.Queue, d.Exchange, d.RoutingKey, d.Properties.MessageID, d.Properties.CorrelationID, d.Tag, extra)
}

// msgLog returns a message's log attributes followed by extra.
func msgLog(m *Message, extra ...any) []any {
	i := m.DeliveryInfo
	return messageLog(i.Queue, i.Exchange, i.RoutingKey, m.Properties.MessageID, m.Properties.CorrelationID, i.DeliveryTag, extra)
}

func messageLog(queue, exchange, key, id, correlation string, tag uint64, extra []any) []any {
	out := make([]any, 0, 12+len(extra))
	out = append(out, "queue", queue, "exchange", exchange, "routing_key", key)
	if id != "" {
		out = append(out, "message_id", id)
	}
	if correlation != "" {
		out = append(out, "correlation_id", correlation)
	}
	out = append(out, "delivery_tag", tag)
	return append(out, extra...)
}
