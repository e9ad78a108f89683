package generator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
)

// This file renders the model's exchanges, queues and bindings as Go
// composite literals of the runtime's types. Zero values are left out, as a
// person would write them.

// The kombu runtime's Go identifier for each enum value; "" for an
// unspecified value, which is left out of the literal.
var (
	exchangeTypes = map[kombuv1.ExchangeType]string{
		kombuv1.ExchangeType_EXCHANGE_TYPE_UNSPECIFIED: "",
		kombuv1.ExchangeType_EXCHANGE_TYPE_DIRECT:      "ExchangeDirect",
		kombuv1.ExchangeType_EXCHANGE_TYPE_TOPIC:       "ExchangeTopic",
		kombuv1.ExchangeType_EXCHANGE_TYPE_FANOUT:      "ExchangeFanout",
		kombuv1.ExchangeType_EXCHANGE_TYPE_HEADERS:     "ExchangeHeaders",
	}
	deliveryModes = map[kombuv1.DeliveryMode]string{
		kombuv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED: "",
		kombuv1.DeliveryMode_DELIVERY_MODE_PERSISTENT:  "Persistent",
		kombuv1.DeliveryMode_DELIVERY_MODE_TRANSIENT:   "Transient",
	}
	queueTypes = map[kombuv1.QueueType]string{
		kombuv1.QueueType_QUEUE_TYPE_UNSPECIFIED: "",
		kombuv1.QueueType_QUEUE_TYPE_CLASSIC:     "QueueClassic",
		kombuv1.QueueType_QUEUE_TYPE_QUORUM:      "QueueQuorum",
		kombuv1.QueueType_QUEUE_TYPE_STREAM:      "QueueStream",
	}
)

// field is one "Name: value" of a composite literal; value is Go source.
type field struct{ name, value string }

// composite renders typ{fields}: on one line when it is short, one field per
// line otherwise. typ is empty for an element of a slice literal.
func composite(typ string, fields []field) string {
	parts := make([]string, len(fields))
	multiline := len(fields) > 2
	for i, f := range fields {
		parts[i] = f.name + ": " + f.value
		multiline = multiline || strings.Contains(f.value, "\n")
	}
	if line := typ + "{" + strings.Join(parts, ", ") + "}"; !multiline && len(line) <= 80 {
		return line
	}
	return typ + "{\n" + strings.Join(parts, ",\n") + ",\n}"
}

// sliceLit renders []elem{...} with one element per line.
func sliceLit(elem string, elems []string) string {
	return "[]" + elem + "{\n" + strings.Join(elems, ",\n") + ",\n}"
}

// argumentsLit renders a map<string,string> option as a map[string]any,
// keys sorted so that output is deterministic.
func argumentsLit(args map[string]string) string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var entries []field
	for _, k := range keys {
		entries = append(entries, field{strconv.Quote(k), strconv.Quote(args[k])})
	}
	return composite("map[string]any", entries)
}

// durationLit renders d in the largest unit that divides it, such as
// 90 * time.Minute for "1h30m". parseDuration rejected anything finer than a
// millisecond.
func durationLit(g *protogen.GeneratedFile, d time.Duration) string {
	units := []struct {
		size time.Duration
		name string
	}{
		{time.Hour, "Hour"},
		{time.Minute, "Minute"},
		{time.Second, "Second"},
		{time.Millisecond, "Millisecond"},
	}
	for _, u := range units {
		if d%u.size == 0 {
			ident := g.QualifiedGoIdent(timePackage.Ident(u.name))
			if d == u.size {
				return ident
			}
			return fmt.Sprintf("%d * %s", d/u.size, ident)
		}
	}
	panic(fmt.Sprintf("duration %v is not a whole number of milliseconds", d))
}

// kombuIdent returns the qualified name of a runtime identifier.
func kombuIdent(g *protogen.GeneratedFile, name string) string {
	return g.QualifiedGoIdent(kombuPackage.Ident(name))
}

// exchangeLit renders ex as a kombu.Exchange literal (typ "" leaves the type
// out, for a slice element).
func exchangeLit(g *protogen.GeneratedFile, typ string, ex *kombuv1.Exchange) string {
	fields := []field{{"Name", strconv.Quote(ex.GetName())}}
	if t := exchangeTypes[ex.GetType()]; t != "" {
		fields = append(fields, field{"Type", kombuIdent(g, t)})
	}
	if ex.Durable != nil && !ex.GetDurable() {
		fields = append(fields, field{"Transient", "true"})
	}
	if ex.GetAutoDelete() {
		fields = append(fields, field{"AutoDelete", "true"})
	}
	if ex.GetInternal() {
		fields = append(fields, field{"Internal", "true"})
	}
	if m := deliveryModes[ex.GetDeliveryMode()]; m != "" {
		fields = append(fields, field{"DeliveryMode", kombuIdent(g, m)})
	}
	if len(ex.GetArguments()) > 0 {
		fields = append(fields, field{"Arguments", argumentsLit(ex.GetArguments())})
	}
	return composite(typ, fields)
}

// queueLit renders q as a kombu.Queue slice element.
func queueLit(g *protogen.GeneratedFile, q *queue) string {
	d := q.decl
	fields := []field{{"Name", strconv.Quote(d.GetName())}}
	if len(q.bindings) > 0 {
		var bindings []string
		for _, b := range q.bindings {
			bindings = append(bindings, bindingLit(b))
		}
		fields = append(fields, field{"Bindings", sliceLit(kombuIdent(g, "Binding"), bindings)})
	}
	if d.Durable != nil && !d.GetDurable() {
		fields = append(fields, field{"Transient", "true"})
	}
	if d.GetExclusive() {
		fields = append(fields, field{"Exclusive", "true"})
	}
	if d.GetAutoDelete() {
		fields = append(fields, field{"AutoDelete", "true"})
	}
	// checkQueue has parsed the durations already.
	if ttl, _ := parseDuration("message_ttl", d.GetMessageTtl()); ttl > 0 {
		fields = append(fields, field{"MessageTTL", durationLit(g, ttl)})
	}
	if exp, _ := parseDuration("expires", d.GetExpires()); exp > 0 {
		fields = append(fields, field{"Expires", durationLit(g, exp)})
	}
	if n := d.GetMaxLength(); n > 0 {
		fields = append(fields, field{"MaxLength", strconv.FormatInt(n, 10)})
	}
	if n := d.GetMaxLengthBytes(); n > 0 {
		fields = append(fields, field{"MaxLengthBytes", strconv.FormatInt(n, 10)})
	}
	if p := d.GetMaxPriority(); p > 0 {
		fields = append(fields, field{"MaxPriority", strconv.FormatUint(uint64(p), 10)})
	}
	if x := d.GetDeadLetterExchange(); x != "" {
		fields = append(fields, field{"DeadLetterExchange", strconv.Quote(x)})
	}
	if k := d.GetDeadLetterRoutingKey(); k != "" {
		fields = append(fields, field{"DeadLetterRoutingKey", strconv.Quote(k)})
	}
	if t := queueTypes[d.GetType()]; t != "" {
		fields = append(fields, field{"Type", kombuIdent(g, t)})
	}
	if n := d.GetDeliveryLimit(); n > 0 {
		fields = append(fields, field{"DeliveryLimit", strconv.FormatUint(uint64(n), 10)})
	}
	if len(d.GetArguments()) > 0 {
		fields = append(fields, field{"Arguments", argumentsLit(d.GetArguments())})
	}
	return composite("", fields)
}

// bindingLit renders b as a kombu.Binding slice element.
func bindingLit(b *kombuv1.Binding) string {
	fields := []field{{"Exchange", strconv.Quote(b.GetExchange())}}
	if k := b.GetRoutingKey(); k != "" {
		fields = append(fields, field{"RoutingKey", strconv.Quote(k)})
	}
	if len(b.GetArguments()) > 0 {
		fields = append(fields, field{"Arguments", argumentsLit(b.GetArguments())})
	}
	return composite("", fields)
}
