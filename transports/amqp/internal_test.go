package amqp

import (
	"crypto/tls"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

func mustParse(t *testing.T, raw string) *transport.URL {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return u
}

func TestParseOptionsKombuForms(t *testing.T) {
	tests := []struct {
		raw            string
		addr, vhost    string
		user, password string
		tls            bool
		heartbeat      time.Duration
	}{
		{raw: "amqp://", addr: "localhost:5672", vhost: "/", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h", addr: "h:5672", vhost: "/", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h/", addr: "h:5672", vhost: "/", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h//", addr: "h:5672", vhost: "/", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h/foo", addr: "h:5672", vhost: "foo", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h//foo", addr: "h:5672", vhost: "/foo", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://h/%2Ffoo", addr: "h:5672", vhost: "/foo", user: "guest", password: "guest", heartbeat: 10 * time.Second},
		{raw: "amqp://u:p%40ss@h:1234/v?heartbeat=2.5", addr: "h:1234", vhost: "v", user: "u", password: "p@ss", heartbeat: 2500 * time.Millisecond},
		{raw: "amqps://h//", addr: "h:5671", vhost: "/", user: "guest", password: "guest", tls: true, heartbeat: 10 * time.Second},
		{raw: "amqp://h//?ssl=true", addr: "h:5671", vhost: "/", user: "guest", password: "guest", tls: true, heartbeat: 10 * time.Second},
		{raw: "pyamqp://[::1]//", addr: "[::1]:5672", vhost: "/", user: "guest", password: "guest", heartbeat: 10 * time.Second},
	}
	for _, tt := range tests {
		o, err := parseOptions(mustParse(t, tt.raw), transport.Config{})
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		got := [...]any{o.addr, o.vhost, o.user, o.password, o.tls != nil, o.heartbeat}
		want := [...]any{tt.addr, tt.vhost, tt.user, tt.password, tt.tls, tt.heartbeat}
		if got != want {
			t.Errorf("%s: got %v, want %v", tt.raw, got, want)
		}
	}
}

func TestParseOptionsQueryAndConfig(t *testing.T) {
	u := mustParse(t, "amqps://h//?heartbeat=30&connect_timeout=2&connection_name=fromurl&channel_max=9&login_method=amqplain")
	o, err := parseOptions(u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if o.heartbeat != 30*time.Second || o.connectTimeout != 2*time.Second || o.connectionName != "fromurl" ||
		o.channelMax != 9 || o.authMechanism != "AMQPLAIN" {
		t.Errorf("options %+v", o)
	}
	// amqps verifies by default: system roots, the URL's host name.
	if o.tls.InsecureSkipVerify || o.tls.ServerName != "h" || o.tls.RootCAs != nil {
		t.Errorf("default TLS config: skip=%v server name %q roots %v", o.tls.InsecureSkipVerify, o.tls.ServerName, o.tls.RootCAs)
	}
	// Config wins over the URL.
	cfgTLS := &tls.Config{ServerName: "from-config"}
	o, err = parseOptions(u, transport.Config{Heartbeat: time.Second, ConnectTimeout: time.Minute, ConnectionName: "fromcfg", TLS: cfgTLS})
	if err != nil {
		t.Fatal(err)
	}
	if o.heartbeat != time.Second || o.connectTimeout != time.Minute || o.connectionName != "fromcfg" || o.tls.ServerName != "from-config" {
		t.Errorf("Config did not win: %+v", o)
	}
	if o.tls == cfgTLS {
		t.Error("the Config's TLS configuration is used without copying it")
	}
	// The amqp091-go spellings and TLS options.
	o, err = parseOptions(mustParse(t, "amqps://h//?connection_timeout=1500&server_name_indication=sni&insecure=true"), transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if o.connectTimeout != 1500*time.Millisecond || o.tls.ServerName != "sni" || !o.tls.InsecureSkipVerify {
		t.Errorf("options %+v tls %+v", o, o.tls)
	}
	for _, raw := range []string{"amqps://h//?ssl_cert_reqs=CERT_NONE", "amqps://h//?ssl_cert_reqs=none"} {
		o, err = parseOptions(mustParse(t, raw), transport.Config{})
		if err != nil || !o.tls.InsecureSkipVerify {
			t.Errorf("%s: %v %+v", raw, err, o)
		}
	}
	o, err = parseOptions(mustParse(t, "amqps://h//?ssl_cert_reqs=required&ssl_check_hostname=false"), transport.Config{})
	if err != nil || o.tls.VerifyConnection == nil {
		t.Errorf("ssl_check_hostname=false: %v, want a chain-only check", err)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	for raw, want := range map[string]string{
		"amqp://h//?foo=1":                         `unknown option "foo"`,
		"amqp://h//?heartbeat=soon":                "heartbeat",
		"amqp://h//?connect_timeout=-1":            "connect_timeout",
		"amqp://h//?channel_max=70000":             "channel_max",
		"amqp://h//?login_method=KERBEROS":         "login_method",
		"amqps://h//?ssl_cert_reqs=sometimes":      "ssl_cert_reqs",
		"amqps://h//?ssl_certfile=/c.pem":          "go together",
		"amqps://h//?ssl_ca_certs=/does/not/exist": "ssl_ca_certs",
		"amqp://u:hunter2@h//?insecure=maybe":      "insecure",
	} {
		_, err := parseOptions(mustParse(t, raw), transport.Config{})
		if !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrInvalidURL mentioning %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the password: %v", raw, err)
		}
	}
}

type level int

func TestToTable(t *testing.T) {
	in := map[string]any{
		"int": 1, "int8": int8(-2), "int16": int16(3), "int32": int32(4), "int64": int64(5),
		"uint": uint(6), "uint8": uint8(7), "uint16": uint16(8), "uint32": uint32(9), "uint64": uint64(10),
		"f32": float32(0.5), "f64": 0.25, "bool": true, "str": "s", "bytes": []byte("b"),
		"dur": 1500 * time.Millisecond, "nil": nil, "named": level(3),
		"strs": []string{"a"}, "ints": []int{1, 2}, "any": []any{1, "x", map[string]any{"y": 2}},
		"map": map[string]string{"k": "v"}, "table": amqp.Table{"t": 1}, "big": int(math.MaxInt64),
	}
	got, err := toTable(in)
	if err != nil {
		t.Fatal(err)
	}
	want := amqp.Table{
		"int": int64(1), "int8": int64(-2), "int16": int64(3), "int32": int64(4), "int64": int64(5),
		"uint": int64(6), "uint8": int64(7), "uint16": int64(8), "uint32": int64(9), "uint64": int64(10),
		"f32": float64(0.5), "f64": 0.25, "bool": true, "str": "s", "bytes": []byte("b"),
		"dur": int64(1500), "nil": nil, "named": int64(3),
		"strs": []any{"a"}, "ints": []any{int64(1), int64(2)}, "any": []any{int64(1), "x", amqp.Table{"y": int64(2)}},
		"map": amqp.Table{"k": "v"}, "table": amqp.Table{"t": int64(1)}, "big": int64(math.MaxInt64),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("toTable\n got %#v\nwant %#v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("amqp091-go refuses the result: %v", err)
	}
	// A table that needs nothing converted is not copied.
	ready := map[string]any{"a": "x", "b": int64(1), "c": amqp.Table{"d": []any{"e"}}}
	same, _ := toTable(ready)
	same["new"] = true
	if _, ok := ready["new"]; !ok {
		t.Error("a ready table was copied")
	}
	for v, want := range map[any]string{
		struct{}{}:             "struct",
		uint64(math.MaxUint64): "does not fit",
		make(chan int):         "chan",
	} {
		_, err := toTable(map[string]any{"k": v})
		if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), `field "k"`) || !strings.Contains(err.Error(), want) {
			t.Errorf("%T: %v, want ErrNotSupported naming the key and %q", v, err, want)
		}
	}
	if _, err := toTable(map[string]any{"outer": map[string]any{"inner": []any{struct{}{}}}}); err == nil ||
		!strings.Contains(err.Error(), `field "outer": field "inner": element 0`) {
		t.Errorf("nested: %v", err)
	}
}

func TestFromTable(t *testing.T) {
	in := amqp.Table{"a": amqp.Table{"b": amqp.Table{"c": int32(1)}}, "l": []any{amqp.Table{"d": "e"}}, "s": "x"}
	got := fromTable(in)
	want := map[string]any{"a": map[string]any{"b": map[string]any{"c": int32(1)}}, "l": []any{map[string]any{"d": "e"}}, "s": "x"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fromTable\n got %#v\nwant %#v", got, want)
	}
}

func TestConsumerTag(t *testing.T) {
	a, b := consumerTag("", "q"), consumerTag("", "q")
	if !strings.HasPrefix(a, "kombu-go.q.") || a == b {
		t.Errorf("tags %q %q", a, b)
	}
	long := consumerTag("p", strings.Repeat("x", 255))
	if len(long) > 255 || !strings.HasPrefix(long, "p.xxx") {
		t.Errorf("long tag %q (%d bytes)", long, len(long))
	}
}

func TestReturnsBounded(t *testing.T) {
	pc := &pubChan{byID: map[string][]string{}}
	for i := range 3 * maxUnclaimed {
		pc.record(amqp.Return{MessageId: strconv.Itoa(i), ReplyText: "NO_ROUTE", ReplyCode: 312})
	}
	if len(pc.byID) != maxUnclaimed || len(pc.order) > 2*maxUnclaimed+1 {
		t.Fatalf("%d unclaimed returns kept, order %d long; want at most %d", len(pc.byID), len(pc.order), maxUnclaimed)
	}
	// The newest are kept, and claiming removes them.
	newest := strconv.Itoa(3*maxUnclaimed - 1)
	p := &probe{ids: []string{newest, "0"}, done: make(chan struct{}, 1)}
	p.texts, p.returned = make([]string, 2), make([]bool, 2)
	pc.answer(p)
	<-p.done
	if !p.returned[0] || p.returned[1] || !strings.Contains(p.texts[0], "NO_ROUTE (312)") {
		t.Fatalf("claim: %v %q", p.returned, p.texts)
	}
	if _, ok := pc.byID[newest]; ok {
		t.Error("a claimed return is still kept")
	}
}

func TestKnownAndForget(t *testing.T) {
	set := func(tags ...uint64) map[uint64]struct{} {
		m := map[uint64]struct{}{}
		for _, tag := range tags {
			m[tag] = struct{}{}
		}
		return m
	}
	m := set(1, 2, 3, 5)
	if err := known(m, 3, true); err != nil {
		t.Errorf("multiple up to a known 3: %v", err)
	}
	forget(m, 3, true)
	if !reflect.DeepEqual(m, set(5)) {
		t.Errorf("multiple up to 3 left %v", m)
	}
	if err := known(m, 4, false); !errors.Is(err, transport.ErrPrecondition) {
		t.Errorf("an unknown tag: %v, want ErrPrecondition", err)
	}
	if err := known(m, 3, false); !errors.Is(err, transport.ErrPrecondition) {
		t.Errorf("a settled tag: %v, want ErrPrecondition", err)
	}
	forget(m, 5, false)
	if len(m) != 0 {
		t.Errorf("single left %v", m)
	}
	m = set(7, 8)
	if err := known(m, 0, true); err != nil {
		t.Errorf("multiple with tag 0: %v", err)
	}
	forget(m, 0, true)
	if len(m) != 0 {
		t.Errorf("multiple with tag 0 left %v", m)
	}
}

func TestMessageProperties(t *testing.T) {
	m, err := message(&transport.Publishing{Properties: transport.Properties{Expiration: 1500 * time.Microsecond}}, "")
	if err != nil || m.Expiration != "1" || m.DeliveryMode != 2 {
		t.Errorf("sub-millisecond expiration %q mode %d (%v)", m.Expiration, m.DeliveryMode, err)
	}
	m, _ = message(&transport.Publishing{Properties: transport.Properties{Expiration: time.Minute, DeliveryMode: transport.Transient}}, "")
	if m.Expiration != "60000" || m.DeliveryMode != 1 {
		t.Errorf("expiration %q mode %d", m.Expiration, m.DeliveryMode)
	}
	if parseExpiration("60000") != time.Minute || parseExpiration("x") != 0 || parseExpiration("") != 0 {
		t.Error("parseExpiration")
	}
}
