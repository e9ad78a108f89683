package redis

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

func parse(t *testing.T, raw string, cfg ...transport.Config) (*options, error) {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatalf("transport.Parse(%q): %v", raw, err)
	}
	var c transport.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	return parseOptions(u, c)
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parse(t, "redis://")
	if err != nil {
		t.Fatal(err)
	}
	if o.network != "tcp" || o.addr != "127.0.0.1:6379" || o.db != 0 || o.tls != nil || o.visibilityTimeout != time.Hour ||
		o.fanoutPrefix != "/0." || !o.fanoutPatterns || o.unackedKey != "unacked" || o.keyprefix != "" || o.restoreInterval != 10*time.Second {
		t.Errorf("defaults %+v", o)
	}
}

func TestOptionsDatabase(t *testing.T) {
	for raw, db := range map[string]int{"redis://h": 0, "redis://h/": 0, "redis://h/3": 3, "redis://h//3": 3, "redis://h:1/15": 15} {
		o, err := parse(t, raw)
		if err != nil || o.db != db {
			t.Errorf("%s: db %v, %v; want %d", raw, o, err, db)
		}
	}
	for _, raw := range []string{"redis://h/x", "redis://h/-1", "redis://h/1/2"} {
		if _, err := parse(t, raw); !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", raw, err)
		}
	}
}

func TestOptionsQuery(t *testing.T) {
	o, err := parse(t, "redis://u:p@h:7000/2?visibility_timeout=1.5&global_keyprefix=app:&polling_interval=0.25&unacked_restore_limit=7"+
		"&unacked_mutex_expire=9&fanout_prefix=/x.&fanout_patterns=false&max_connections=3&socket_timeout=2&socket_connect_timeout=4"+
		"&unacked_key=u1&unacked_index_key=u2&unacked_mutex_key=u3&client_name=me&failover_strategy=shuffle")
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "h:7000" || o.user != "u" || o.pass != "p" || o.db != 2 || o.visibilityTimeout != 1500*time.Millisecond ||
		o.keyprefix != "app:" || o.pollInterval != 250*time.Millisecond || !o.pollIntervalSet || o.restoreLimit != 7 ||
		o.mutexExpire != 9*time.Second || o.fanoutPrefix != "/x." || o.fanoutPatterns || o.poolSize != 3 ||
		o.ioTimeout != 2*time.Second || o.dialTimeout != 4*time.Second || o.unackedKey != "u1" || o.unackedIndexKey != "u2" ||
		o.unackedMutexKey != "u3" || o.clientName != "me" || o.restoreInterval != 750*time.Millisecond {
		t.Errorf("options %+v", o)
	}
	if o, _ := parse(t, "redis://h/4?fanout_prefix=false"); o.fanoutPrefix != "" {
		t.Errorf("fanout_prefix=false: %q", o.fanoutPrefix)
	}
	if o, _ := parse(t, "redis://h/4?fanout_prefix={db}:"); o.fanoutPrefix != "4:" {
		t.Errorf("fanout_prefix={db}: %q", o.fanoutPrefix)
	}
	// The runtime's options win over the URL's.
	o, _ = parse(t, "redis://h?socket_connect_timeout=4&client_name=url", transport.Config{ConnectTimeout: time.Second, ConnectionName: "cfg"})
	if o.dialTimeout != time.Second || o.clientName != "cfg" {
		t.Errorf("config overrides: %v %q", o.dialTimeout, o.clientName)
	}
	for _, raw := range []string{
		"redis://h?visibility_timeout=0", "redis://h?visibility_timeout=x", "redis://h?max_connections=-1",
		"redis://h?fanout_patterns=maybe", "redis://h?master_name=m", "redis://h?sentinel=x",
	} {
		if _, err := parse(t, raw); !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", raw, err)
		}
	}
}

func TestOptionsUnknownKeyIsNamed(t *testing.T) {
	_, err := parse(t, "redis://h?visibility_timout=10")
	if !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), `"visibility_timout"`) {
		t.Errorf("unknown key: %v", err)
	}
}

func TestOptionsSentinel(t *testing.T) {
	o, err := parse(t, "sentinel://:pw@s1/1?master_name=mymaster&sentinel=s2:26380&sentinel=s3,[::1]:1&sentinel_password=sp&sentinel_username=su")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"s1:26379", "s2:26380", "s3:26379", "[::1]:1"}; !slices.Equal(o.sentinels, want) {
		t.Errorf("sentinels %q, want %q", o.sentinels, want)
	}
	if o.masterName != "mymaster" || o.pass != "pw" || o.db != 1 || o.sentinelPass != "sp" || o.sentinelUser != "su" || o.tls != nil {
		t.Errorf("sentinel options %+v", o)
	}
	if _, err := parse(t, "sentinel://s1"); !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), "master_name") {
		t.Errorf("sentinel without master_name: %v", err)
	}
	o, err = parse(t, "sentinel://s1?master_name=m&ssl=true&ssl_cert_reqs=none")
	if err != nil || o.tls == nil || !o.tls.InsecureSkipVerify {
		t.Errorf("sentinel with TLS: %+v, %v", o, err)
	}
	// A masked URL never shows the Sentinel password.
	u, _ := transport.Parse("sentinel://s1?master_name=m&sentinel_password=topsecret")
	if strings.Contains(u.String(), "topsecret") {
		t.Errorf("URL shows the password: %s", u)
	}
}

func TestOptionsTLS(t *testing.T) {
	o, err := parse(t, "rediss://h")
	if err != nil || o.tls == nil || o.tls.InsecureSkipVerify || o.tls.MinVersion != tls.VersionTLS12 {
		t.Fatalf("rediss:// %+v, %v", o.tls, err)
	}
	base := &tls.Config{ServerName: "given", MinVersion: tls.VersionTLS13}
	o, _ = parse(t, "rediss://h?insecure=true", transport.Config{TLS: base})
	if o.tls.ServerName != "given" || o.tls.MinVersion != tls.VersionTLS13 || !o.tls.InsecureSkipVerify || base.InsecureSkipVerify {
		t.Errorf("config TLS: %+v (base changed: %t)", o.tls, base.InsecureSkipVerify)
	}
	for _, raw := range []string{
		"redis://h?insecure=true", "redis://h?ssl_ca_certs=/x", "rediss://h?ssl_cert_reqs=sometimes",
		"rediss://h?ssl_ca_certs=/does/not/exist", "rediss://h?ssl_keyfile=/k",
	} {
		if _, err := parse(t, raw); !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", raw, err)
		}
	}
}

func TestOptionsUnixSocket(t *testing.T) {
	o, err := parse(t, "redis+socket:///run/redis.sock?virtual_host=5&global_keyprefix=p:")
	if err != nil || o.network != "unix" || o.addr != "/run/redis.sock" || o.db != 5 || o.keyprefix != "p:" {
		t.Errorf("socket URL: %+v, %v", o, err)
	}
}

func TestKeyspace(t *testing.T) {
	k := keyspace{prefix: "p:", fanoutPrefix: "/3.", fanoutPatterns: true}
	if got := k.bucket("q", stepFor(5)); got != "p:q\x06\x163" {
		t.Errorf("bucket for priority 5: %q", got)
	}
	for prio, step := range map[int]int{-1: 0, 0: 0, 2: 0, 3: 1, 5: 1, 6: 2, 8: 2, 9: 3, 255: 3} {
		if got := stepFor(prio); got != step {
			t.Errorf("stepFor(%d) = %d, want %d", prio, got, step)
		}
	}
	if got := k.fanoutChannel("ex", "rk"); got != "p:/3.ex/rk" {
		t.Errorf("fanout channel %q", got)
	}
	if got := k.fanoutChannel("ex", ""); got != "p:/3.ex" {
		t.Errorf("fanout channel %q", got)
	}
}
