package transport

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseKombuForms(t *testing.T) {
	tests := []struct {
		raw                    string
		scheme, host, user, pw string
		port                   int
		path                   string
		hasPath                bool
		masked                 string
	}{
		// Kombu: the path after the first "/" is the vhost, unescaped.
		{raw: "amqp://guest:guest@localhost:5672//", scheme: "amqp", host: "localhost", port: 5672,
			user: "guest", pw: "guest", path: "/", hasPath: true, masked: "amqp://guest:**@localhost:5672//"},
		{raw: "amqp://h/foo", scheme: "amqp", host: "h", path: "foo", hasPath: true, masked: "amqp://h/foo"},
		{raw: "amqp://h//foo", scheme: "amqp", host: "h", path: "/foo", hasPath: true, masked: "amqp://h//foo"},
		{raw: "amqp://h/%2Fprod", scheme: "amqp", host: "h", path: "/prod", hasPath: true, masked: "amqp://h//prod"},
		{raw: "amqp://h", scheme: "amqp", host: "h", masked: "amqp://h"},
		{raw: "redis://:s3cret@127.0.0.1:6379/15", scheme: "redis", host: "127.0.0.1", port: 6379,
			pw: "s3cret", path: "15", hasPath: true, masked: "redis://:**@127.0.0.1:6379/15"},
		{raw: "memory://", scheme: "memory", masked: "memory://"},
		{raw: "memory:///tests", scheme: "memory", path: "tests", hasPath: true, masked: "memory:///tests"},
		{raw: "amqps://u:p%40ss@[::1]:5671/v?heartbeat=30", scheme: "amqps", host: "::1", port: 5671,
			user: "u", pw: "p@ss", path: "v", hasPath: true, masked: "amqps://u:**@[::1]:5671/v?heartbeat=30"},
		{raw: "redis://h?password=hunter2&ssl_cert_reqs=none", scheme: "redis", host: "h",
			masked: "redis://h?password=%2A%2A&ssl_cert_reqs=none"},
		{raw: "amqp://u:p%2Fw%3Fd%40x@h//", scheme: "amqp", host: "h", user: "u", pw: "p/w?d@x",
			path: "/", hasPath: true, masked: "amqp://u:**@h//"},
		{raw: "redis://h/0?ssl_certfile=/etc/a%40b.pem", scheme: "redis", host: "h", path: "0", hasPath: true,
			masked: "redis://h/0?ssl_certfile=%2Fetc%2Fa%40b.pem"},
		// Kombu's Azure form: the account URL after the key parses as the
		// host "http" with an empty port; it is shown as it was written.
		{raw: "azurestoragequeues://KEY==@http://127.0.0.1:10001/devstoreaccount1", scheme: "azurestoragequeues",
			host: "http", user: "KEY==", path: "/127.0.0.1:10001/devstoreaccount1", hasPath: true,
			masked: "azurestoragequeues://**@http://127.0.0.1:10001/devstoreaccount1"},
		{raw: "amqp://h:/v", scheme: "amqp", host: "h", path: "v", hasPath: true, masked: "amqp://h:/v"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := Parse(tt.raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := [...]any{u.Scheme, u.Host, u.Port, u.User, u.Password, u.Path, u.HasPath}
			want := [...]any{tt.scheme, tt.host, tt.port, tt.user, tt.pw, tt.path, tt.hasPath}
			if got != want {
				t.Errorf("parsed %v, want %v", got, want)
			}
			if s := u.String(); s != tt.masked {
				t.Errorf("String() = %q, want %q", s, tt.masked)
			}
			if tt.pw != "" && strings.Contains(u.String(), ":"+tt.pw+"@") {
				t.Errorf("String() %q leaks the password", u.String())
			}
		})
	}
}

func TestParseSubURL(t *testing.T) {
	u, err := Parse("redis+socket:///tmp/redis.sock")
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "redis" || u.SubURL != "socket:///tmp/redis.sock" {
		t.Fatalf("got scheme %q sub %q", u.Scheme, u.SubURL)
	}
}

func TestParseRejectsBadURLs(t *testing.T) {
	tests := []struct{ raw, reason string }{
		{"", "empty URL"},
		{"localhost:5672", "missing scheme"},
		{"amqp://h:99999//", "port"},
		{"amqp://h:abc//", "port"},
		{"amqp://user:pa%zzss@h//", "password is not valid percent-encoding"},
		{"1amqp://h", "not a valid transport name"},
		{"amqp://h/%zz", "path"},
		{"amqp://a;amqp://b", "use ParseList"},
		{"amqp://guest:4711/s3cret@localhost/leak", "percent-encode"},
		{"amqp://guest:hunter/2@localhost//", "percent-encode"},
		{"amqp://guest:pa?ss@localhost//", "percent-encode"},
		{"redis://h/0?ssl_certfile=/etc/a@b.pem", "percent-encode"}, // '@' is never allowed after the host
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := Parse(tt.raw)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("error %v does not match ErrInvalidURL", err)
			}
			var ue *URLError
			if !errors.As(err, &ue) || !strings.Contains(ue.Reason, tt.reason) {
				t.Errorf("error %v, want reason containing %q", err, tt.reason)
			}
		})
	}
}

// Each malformed form of a URL gets its own reason, and the URL is shown
// with only its password masked. Each of the first three was reported as
// "';' inside a URL" with the URL hidden, though none holds a ';' or a
// password.
func TestParseSaysWhatIsWrong(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"localhost:5672", `kombu: invalid broker URL "localhost:5672": missing scheme: "localhost:5672" is a host and port, and ` +
			`a broker URL begins with its transport, such as amqp://localhost:5672`},
		{"amqp//guest:guest@localhost:5672//", `kombu: invalid broker URL "amqp//guest:**@localhost:5672//": ` +
			`missing ':' between the scheme and "//": write amqp://`},
		{"amqp:/guest@localhost//", `kombu: invalid broker URL "amqp:/guest@localhost//": "amqp:/" has one slash after the scheme: write amqp://`},
		{"amqp:localhost", `kombu: invalid broker URL "amqp:localhost": "amqp:" must be followed by "//": write amqp://`},
		{"redis.example.com:6379/0", `kombu: invalid broker URL "redis.example.com:6379/0": missing scheme: "redis.example.com:6379" is a host and port, and ` +
			`a broker URL begins with its transport, such as redis://redis.example.com:6379`},
		{"guest:secret@localhost:5672", `kombu: invalid broker URL "guest:**@localhost:5672": missing scheme: a broker URL begins with its transport, ` +
			`such as amqp://localhost:5672//, redis://localhost:6379/0 or memory://`},
		{"amqp:guest:secret@h", `kombu: invalid broker URL "amqp:**@h": "amqp:" must be followed by "//": write amqp://`},
		{"amqp:/guest@h/x?next=amqp://y", `kombu: invalid broker URL "amqp:/guest@h/x?next=amqp%3A%2F%2Fy": "amqp:/" has one slash after the scheme: write amqp://`},
	}
	for _, tt := range tests {
		for name, parse := range map[string]func(string) error{
			"Parse":     func(s string) error { _, err := Parse(s); return err },
			"ParseList": func(s string) error { _, err := ParseList(s); return err },
		} {
			err := parse(tt.raw)
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("%s(%q) = %v, want ErrInvalidURL", name, tt.raw, err)
				continue
			}
			if err.Error() != tt.want {
				t.Errorf("%s(%q):\n got %s\nwant %s", name, tt.raw, err, tt.want)
			}
		}
	}
}

// A ';' in a list is a separator; inside a password or a query it splits a
// URL, and the error says which without showing the secret.
func TestParseListSemicolons(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"amqp://guest:pa;ss@h//", `kombu: invalid broker URL "amqp://guest:**@h//": ';' inside a user name or password: ` +
			`percent-encode it (%3B); between URLs, ';' separates a failover list of transport://... URLs`},
		{"redis://h?password=hun;ter2", `kombu: invalid broker URL "redis://h?**": ';' inside the query: ` +
			`separate options with '&', and percent-encode a ';' in a value (%3B)`},
		{"amqp://a//;localhost:5672", `kombu: invalid broker URL "localhost:5672": entry 2 of the ';'-separated failover list: ` +
			`missing scheme: "localhost:5672" is a host and port, and a broker URL begins with its transport, such as amqp://localhost:5672`},
		{"amqp://u:pw@a//;;amqp://b", `kombu: invalid broker URL "amqp://u:**@a//;;amqp://b": entry 2 of the ';'-separated failover list is empty`},
		{"amqp://a//;amqp://u:pw@b:0//", `kombu: invalid broker URL "amqp://u:**@b:0//": entry 2 of the ';'-separated failover list: ` +
			`the port is not a number from 1 to 65535`},
	}
	for _, tt := range tests {
		_, err := ParseList(tt.raw)
		if !errors.Is(err, ErrInvalidURL) || err.Error() != tt.want {
			t.Errorf("ParseList(%q):\n got %v\nwant %s", tt.raw, err, tt.want)
		}
	}
}

func TestSuggestScheme(t *testing.T) {
	for unknown, want := range map[string]string{
		"rabbitmq": "amqp", "rabbit": "amqp", "RabbitMQ": "amqp", "ampq": "amqp", "amqb": "amqp", "AMQP": "amqp",
		"redis-sentinel": "sentinel", "reddis": "redis", "redsi": "redis", "valkey": "redis",
		"memroy": "memory", "inmemory": "memory",
		"filesytem": "filesystem", "fs": "filesystem", "file": "filesystem",
		"kafka": "", "http": "", "sqs": "", "x": "",
	} {
		got, ok := SuggestScheme(unknown)
		if got != want || ok != (want != "") {
			t.Errorf("SuggestScheme(%q) = %q, %v; want %q", unknown, got, ok, want)
		}
	}
}

func TestURLErrorsNeverShowThePassword(t *testing.T) {
	for _, raw := range []string{
		"amqp://user:hunter2@h:99999//",
		"amqp://user:hunter2@h/%zz",
		"redis://h:1/0?password=hunter2&x=%zz",
		"amqp://user:hunter2@h;;amqp://b",
		"amqp://user:hunter2/x@h//",      // unescaped '/' in the password
		"amqp://user:hunter2?x@h//",      // unescaped '?' in the password
		"memory://user:hunter2/x@h/leak", // would otherwise parse as host and vhost
	} {
		var err error
		if strings.Contains(raw, ";") {
			_, err = ParseList(raw)
		} else {
			_, err = Parse(raw)
		}
		if err == nil {
			t.Fatalf("%s: no error", raw)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hunter") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestParseList(t *testing.T) {
	us, err := ParseList("amqp://a//;amqp://b:5673//")
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].Host != "a" || us[1].Host != "b" || us[1].Port != 5673 {
		t.Fatalf("got %+v %+v", us[0], us[1])
	}
	if _, err := ParseList("amqp://a//;"); !errors.Is(err, ErrInvalidURL) {
		t.Fatalf("trailing ';': got %v, want ErrInvalidURL", err)
	}
}

func TestHostPortDefaults(t *testing.T) {
	u, _ := Parse("amqp://")
	if got := u.HostPort("localhost", 5672); got != "localhost:5672" {
		t.Errorf("HostPort = %q", got)
	}
	u, _ = Parse("amqp://[::1]:1234")
	if got := u.HostPort("localhost", 5672); got != "[::1]:1234" {
		t.Errorf("HostPort = %q", got)
	}
}

func TestRegistry(t *testing.T) {
	scheme := fmt.Sprintf("test-scheme-%d", registrySeq.Add(1)) // unique under -count=N
	Register(scheme, fakeDriver{})
	if _, ok := Lookup(scheme); !ok {
		t.Fatal("registered driver not found")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a scheme twice did not panic")
		}
	}()
	Register(scheme, fakeDriver{})
}

type fakeDriver struct{ Driver }

var registrySeq atomic.Int64

// Kombu's Azure URL carries the account key as its user part: it is masked
// like a password, parsed or not.
func TestAzureKeyMasked(t *testing.T) {
	for _, raw := range []string{
		"azurestoragequeues://s3cretKEY==@http://127.0.0.1:10001/devstoreaccount1",
		"azurestoragequeues://s3cret/KEY==@http://127.0.0.1:10001/devstoreaccount1",
	} {
		u, err := Parse(raw)
		var shown string
		if err != nil {
			shown = err.Error()
		} else {
			shown = u.String()
		}
		if strings.Contains(shown, "s3cret") {
			t.Errorf("%s: shown as %s", raw, shown)
		}
	}
}
