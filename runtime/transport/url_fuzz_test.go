package transport

import (
	"net/url"
	"strings"
	"testing"
)

// urlStaticText is every fixed text Parse and ParseList put in errors or in
// String(): a password that happens to be part of it is not a leak.
const urlStaticText = `kombu: invalid broker URL "" empty URL contains ';': use ParseList for a failover list ` +
	`missing scheme: a broker URL begins with its transport, such as amqp://localhost:5672//, redis://localhost:6379/0 or memory:// ` +
	`is a host and port, and has one slash after the scheme: write :// missing ':' between the scheme and "//" must be followed by ` +
	`';' inside a user name or password: percent-encode it (%3B); between URLs, ';' separates a failover list of transport://... URLs ` +
	`';' inside the query: separate options with '&', and percent-encode a ';' in a value (%3B) ` +
	`entry  of the ';'-separated failover list is empty amqps redis sentinel ` +
	`scheme "" is not a valid transport name ` +
	`'@' after the host: percent-encode '/', '?', '#' and '@' in user names, passwords and virtual hosts (%2F, %3F, %23, %40) ` +
	`fragments ('#') are not part of broker URLs query: path "": user name is not valid percent-encoding ` +
	`password is not valid percent-encoding host "": port "" is not a number from 1 to 65535 ` +
	`host "" is not a host name empty entry in ';'-separated failover list ** :** invalid URL escape ` +
	`missing port in address too many colons in address missing ']' in address unexpected '[' in address ` +
	`unexpected ']' in address address invalid semicolon separator in query`

// FuzzURL parses broker URLs built around a password and checks that the
// password never shows, in clear or percent-encoded, in an error or in
// String(), which is what connections log and put in errors. The separator
// after the scheme varies, since malformed ones ("amqp//", "amqp:/", none)
// are shown in errors too. A URL with a percent-encoded password that
// parses must give the password back intact.
func FuzzURL(f *testing.F) {
	f.Add("amqp", "://", "guest", "s3cr3t-p4ss", "localhost:5672", "/", "heartbeat=10", true)
	f.Add("amqps", "://", "user", "p@ss/w?rd#x", "broker.example.com", "vhost", "", true)
	f.Add("amqp", "://", "user", "p@ss/w?rd#x", "broker", "vhost", "", false)
	f.Add("redis", "://", "", "redis-secret", "127.0.0.1:6379", "0", "password=also-secret", true)
	f.Add("sentinel", "://", "u", "very%zzbad", "[::1]:26379", "", "master_name=m", false)
	f.Add("amqp", "://", "u", "colon:inside", "[fe80::1%25eth0]:5672", "%2f", "", false)
	f.Add("redis+socket", "://", "", "sock-secret", "", "/tmp/redis.sock", "", false)
	f.Add("amqp", "://", "u:v", "pass@word", "h:99999", "x", "a=%zz", false)
	f.Add("amqp", "//", "guest", "hunter22", "localhost:5672", "/", "", false)
	f.Add("amqp", ":/", "guest", "hunter;22", "localhost", "", "", false)
	f.Add("", "", "guest", "hunter/22", "localhost:5672", "", "", false)
	f.Add("amqp", ":", "guest", "hunter?22", "h", "", "", false)
	f.Fuzz(func(t *testing.T, scheme, sep, user, pass, host, path, query string, escape bool) {
		p := pass
		if escape {
			p = url.PathEscape(pass)
		}
		raw := scheme + sep + user + ":" + p + "@" + host + "/" + path
		if query != "" {
			raw += "?" + query
		}
		u, perr := Parse(raw)
		_, lerr := ParseList(raw)
		// What the same URL shows with another password: text there is not
		// the password's doing (it comes from the host, the query, fixed
		// messages...).
		other := strings.Replace(raw, ":"+p+"@", ":sentinel-pw@", 1)
		var background strings.Builder
		if v, err := Parse(other); err == nil {
			background.WriteString(v.String())
		} else {
			background.WriteString(err.Error())
		}
		if _, err := ParseList(other); err != nil {
			background.WriteString(err.Error())
		}
		// A scheme-like word, ':' and a password beginning with '/' is a URL
		// with a user and no password: "amqp" + ":" + "//guest" + "@h" is
		// amqp://guest@h, and "amqp" + ":" + "/guest" + "@h" the malformed
		// amqp:/guest@h, which errors show.
		lead := scheme + sep + user
		ambiguous := lead != "" && schemeLen(lead) == len(lead) && strings.HasPrefix(p, "/")
		leaks := func(what, s string) {
			if len(pass) < 6 || ambiguous {
				return
			}
			for _, form := range []string{pass, url.PathEscape(pass), url.QueryEscape(pass)} {
				if strings.Contains(s, form) && !strings.Contains(background.String(), form) &&
					!strings.Contains(urlStaticText, form) {
					t.Fatalf("%s shows the password %q:\n%s\n(from %q)", what, pass, s, raw)
				}
			}
		}
		for _, err := range []error{perr, lerr} {
			if err != nil {
				leaks("error", err.Error())
			}
		}
		if u == nil {
			return
		}
		leaks("String()", u.String())
		if escape && sep == "://" && u.SubURL == "" && perr == nil && !strings.ContainsAny(user, ":@/?#;") && !strings.ContainsAny(host, "@/?#;") {
			if u.Password != pass {
				t.Fatalf("password %q parsed as %q from %q", pass, u.Password, raw)
			}
		}
		if u.Query == nil {
			t.Fatal("nil Query")
		}
		_ = u.HostPort("localhost", 5672)
	})
}

// TestSemicolonInPasswordIsMasked: an unescaped ';' in a password splits a
// failover list there; the error must show no part of the password.
func TestSemicolonInPasswordIsMasked(t *testing.T) {
	const pass = "Pa55;w0rd-secret"
	_, err := ParseList("amqp://guest:" + pass + "@host//")
	if err == nil {
		t.Fatal("a URL split by a ';' in its password parsed")
	}
	for _, part := range strings.Split(pass, ";") {
		if strings.Contains(err.Error(), part) {
			t.Fatalf("the error shows part of the password: %v", err)
		}
	}
}
