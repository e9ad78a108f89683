package nats

import (
	"strings"
	"testing"
)

// parseAck reads both ack subject forms nats-server writes, and refuses
// what is not one, without the allocations of splitting (it runs twice for
// every message taken).
func TestParseAck(t *testing.T) {
	for _, c := range []struct {
		reply string
		want  ackMeta
		ok    bool
	}{
		{"$JS.ACK.KOMBU_q.kombu.3.42.40.1700000000000000000.0", ackMeta{stream: "KOMBU_q", delivered: 3, seq: 42}, true},
		{"$JS.ACK.hub.ACCHASH.KOMBU_q.kombu.1.7.7.1700000000000000000.5.tok", ackMeta{stream: "KOMBU_q", delivered: 1, seq: 7}, true},
		{"$JS.ACK.KOMBU_q.kombu.x.42.40.1.0", ackMeta{}, false},
		{"$JS.ACK.too.short", ackMeta{}, false},
		{"", ackMeta{}, false},
		{"$JS.ACK.d.h.S.c.2.9.9.1.0" + strings.Repeat(".x", 10), ackMeta{stream: "S", delivered: 2, seq: 9}, true},
	} {
		got, ok := parseAck(c.reply)
		if ok != c.ok || got != c.want {
			t.Errorf("parseAck(%q) = %+v, %t; want %+v, %t", c.reply, got, ok, c.want, c.ok)
		}
	}
	reply := "$JS.ACK.KOMBU_q.kombu.3.42.40.1700000000000000000.0"
	if n := testing.AllocsPerRun(100, func() { parseAck(reply) }); n != 0 {
		t.Errorf("parseAck allocates %v times", n)
	}
}
