package transport

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URL is a broker URL parsed the way Kombu parses it:
//
//	transport://userid:password@hostname:port/virtual_host?option=value
//
// The path after the first slash is the virtual host (AMQP) or database
// number (Redis), unescaped: "amqp://h//" names the vhost "/", "amqp://h/foo"
// names "foo" and "amqp://h//foo" names "/foo". A "transport+rest" scheme
// keeps the text after the plus for the driver, as Kombu's
// "redis+socket:///tmp/redis.sock" does.
type URL struct {
	Scheme   string // the transport: "amqp", "redis", "memory", ...
	SubURL   string // what followed "transport+" in a "transport+rest" URL, else ""
	Host     string // without port or brackets; "" when absent
	Port     int    // 0 when absent: the driver's default applies
	User     string
	Password string
	// Path is the unescaped text after the first slash of the path, and
	// HasPath says whether there was a path at all ("amqp://h" has none,
	// "amqp://h/" has an empty one).
	Path    string
	HasPath bool
	Query   url.Values // never nil

	// emptyPort records a host followed by ':' and no port, so that String
	// gives it back: Kombu's Azure form "azurestoragequeues://<key>@http://h:p/a"
	// parses as the host "http", an empty port and the path "/h:p/a".
	emptyPort bool
}

// URLError says what is wrong with a broker URL. The URL it carries has its
// password masked. It matches ErrInvalidURL with errors.Is.
type URLError struct {
	URL    string // masked
	Reason string
}

func (e *URLError) Error() string {
	return fmt.Sprintf("kombu: invalid broker URL %q: %s", e.URL, e.Reason)
}

func (e *URLError) Is(target error) bool { return target == ErrInvalidURL }

// Parse parses a single broker URL. For a ";"-separated failover list use
// ParseList.
func Parse(raw string) (*URL, error) {
	raw = strings.TrimSpace(raw)
	bad := func(reason string, args ...any) (*URL, error) {
		return nil, &URLError{URL: maskRaw(raw), Reason: fmt.Sprintf(reason, args...)}
	}
	if raw == "" {
		return bad("empty URL")
	}
	if strings.Contains(raw, ";") {
		return bad("contains ';': use ParseList for a failover list, or percent-encode it (%%3B) in a user name or password")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || strings.ContainsAny(scheme, ":/@") {
		// No "://", or only a later one (in a query, say): the scheme or
		// its separator is malformed.
		return bad("%s", missingSeparator(raw))
	}
	u := &URL{Query: url.Values{}}
	if name, sub, plus := strings.Cut(scheme, "+"); plus {
		u.Scheme, u.SubURL = name, sub+"://"+rest
	} else {
		u.Scheme = scheme
	}
	if !validScheme(u.Scheme) {
		return bad("scheme %q is not a valid transport name", u.Scheme)
	}
	if u.SubURL != "" {
		return u, nil // the driver parses the rest itself
	}

	// The authority ends at the first '/', '?' or '#' (RFC 3986). A user
	// name or password holding one of those must be percent-encoded; if it
	// is not, an '@' shows up after the authority, and the URL is refused
	// without quoting any of it, since that text is likely a password.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "@") {
		return bad("'@' after the host: percent-encode '/', '?', '#' and '@' in user names, passwords and virtual hosts (%%2F, %%3F, %%23, %%40)")
	}
	if strings.HasPrefix(tail, "#") {
		return bad("fragments ('#') are not part of broker URLs")
	}
	path, query, hasQuery := strings.Cut(tail, "?")
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return bad("query: %v", err)
		}
		u.Query = q
	}
	if strings.HasPrefix(path, "/") {
		u.HasPath = true
		p, err := url.PathUnescape(path[1:])
		if err != nil {
			return bad("path %q: %v", path[1:], err)
		}
		u.Path = p
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo := authority[:at]
		authority = authority[at+1:]
		user, pass, _ := strings.Cut(userinfo, ":")
		var err error
		if u.User, err = url.PathUnescape(user); err != nil {
			return bad("user name is not valid percent-encoding")
		}
		if u.Password, err = url.PathUnescape(pass); err != nil {
			return bad("password is not valid percent-encoding")
		}
	}
	if authority != "" {
		host, port := authority, ""
		if strings.HasPrefix(authority, "[") || strings.Count(authority, ":") == 1 {
			h, p, err := net.SplitHostPort(authority)
			if err != nil {
				if !strings.Contains(err.Error(), "missing port") {
					return bad("host %q: %v", authority, err)
				}
				h = strings.Trim(authority, "[]")
			}
			host, port = h, p
			u.emptyPort = p == "" && strings.HasSuffix(authority, ":")
		}
		if port != "" {
			n, err := strconv.Atoi(port)
			if err != nil || n <= 0 || n > 65535 {
				// Not quoted: a password with an unescaped '/' could land here.
				return bad("the port is not a number from 1 to 65535")
			}
			u.Port = n
		}
		if strings.ContainsAny(host, " /\\") {
			return bad("host %q is not a host name", host)
		}
		u.Host = host
	}
	return u, nil
}

// ParseList parses a ";"-separated failover list of broker URLs, as Kombu's
// Connection("amqp://a;amqp://b") does. Empty entries are an error. A URL
// without ';' is a list of one.
func ParseList(raw string) ([]*URL, error) {
	if !strings.Contains(raw, ";") {
		u, err := Parse(raw)
		if err != nil {
			return nil, err
		}
		return []*URL{u}, nil
	}
	parts := strings.Split(raw, ";")
	for i, p := range parts[1:] {
		if strings.TrimSpace(p) == "" || strings.Contains(p, "://") {
			continue
		}
		// An entry without a scheme is most likely the rest of the URL
		// before it, split by a ';' in a password (an '@' follows) or in a
		// query. Its text is not shown.
		switch {
		case strings.Contains(strings.Join(parts[i+1:], ";"), "@"):
			return nil, &URLError{URL: maskRaw(raw),
				Reason: "';' inside a user name or password: percent-encode it (%3B); between URLs, ';' separates a failover list of transport://... URLs"}
		case strings.Contains(parts[i], "?"):
			return nil, &URLError{URL: maskRaw(raw),
				Reason: "';' inside the query: separate options with '&', and percent-encode a ';' in a value (%3B)"}
		}
	}
	out := make([]*URL, 0, len(parts))
	for i, p := range parts {
		if strings.TrimSpace(p) == "" {
			return nil, &URLError{URL: maskRaw(raw), Reason: fmt.Sprintf("entry %d of the ';'-separated failover list is empty", i+1)}
		}
		u, err := Parse(p)
		if err != nil {
			var ue *URLError
			if errors.As(err, &ue) {
				return nil, &URLError{URL: ue.URL, Reason: fmt.Sprintf("entry %d of the ';'-separated failover list: %s", i+1, ue.Reason)}
			}
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// HostPort returns "host:port", filling in the given defaults where the URL
// has none.
func (u *URL) HostPort(defaultHost string, defaultPort int) string {
	h, p := u.Host, u.Port
	if h == "" {
		h = defaultHost
	}
	if p == 0 {
		p = defaultPort
	}
	return net.JoinHostPort(h, strconv.Itoa(p))
}

// String returns the URL with its password masked as "**", as Kombu's
// as_uri() does. It never contains the password.
func (u *URL) String() string {
	if u.SubURL != "" {
		return u.Scheme + "+" + maskRaw(u.SubURL)
	}
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.User != "" || u.Password != "" {
		if secretUser[u.Scheme] && u.User != "" {
			b.WriteString("**")
		} else {
			b.WriteString(url.PathEscape(u.User))
		}
		if u.Password != "" {
			b.WriteString(":**")
		}
		b.WriteByte('@')
	}
	if strings.Contains(u.Host, ":") {
		b.WriteString("[" + u.Host + "]")
	} else {
		b.WriteString(u.Host)
	}
	if u.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(u.Port))
	} else if u.emptyPort {
		b.WriteByte(':')
	}
	if u.HasPath {
		b.WriteByte('/')
		b.WriteString(escapePath(u.Path))
	}
	if len(u.Query) > 0 {
		b.WriteByte('?')
		b.WriteString(maskQuery(u.Query).Encode())
	}
	return b.String()
}

// escapePath escapes a vhost for display while keeping "/" readable, so the
// vhost "/" prints as Kombu prints it: "amqp://host//".
func escapePath(p string) string {
	return strings.ReplaceAll(url.PathEscape(p), "%2F", "/")
}

func maskQuery(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		if isSecretKey(k) {
			v = []string{"**"}
		}
		out[k] = v
	}
	return out
}

// secretUser are the schemes whose user part is a secret: Kombu's
// azurestoragequeues://<account key or SAS token>@<account URL>.
var secretUser = map[string]bool{"azurestoragequeues": true}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// maskRaw masks the password of a URL that may not parse, for error
// messages, and shows the rest. The password is taken to run from the first
// ':' of the user information to the last '@', which errs on the side of
// hiding too much when a password holds an unescaped '@', '/' or ';'.
func maskRaw(raw string) string {
	parts := strings.Split(raw, ";")
	for _, p := range parts {
		if !strings.Contains(p, "://") {
			// Not a list of URLs: likely one URL that a ';' in its password
			// splits. Masked as one, the halves stay hidden.
			return maskOne(raw)
		}
	}
	for i, p := range parts {
		parts[i] = maskOne(p)
	}
	return strings.Join(parts, ";")
}

// maskOne masks the password and the secret query options of one URL,
// which may lack its scheme or have a malformed separator.
func maskOne(s string) string {
	start := authorityStart(s)
	rest := s[start:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
			rest = rest[:colon+1] + "**" + rest[at:]
		} else if n := schemeLen(s); n > 0 && secretUser[strings.ToLower(s[:n])] {
			rest = "**" + rest[at:]
		}
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		if q, err := url.ParseQuery(rest[i+1:]); err == nil {
			rest = rest[:i+1] + maskQuery(q).Encode()
		} else {
			rest = rest[:i+1] + "**"
		}
	}
	return s[:start] + rest
}

// authorityStart returns where the user information or host of s begins:
// after "scheme://", or after the malformed "scheme//" and "scheme:/", and
// at 0 when s has no recognizable scheme ("host:port", "user:pass@host").
// "x:/" is a scheme only when x is a scheme kombu-go knows: "amqp:/guest@h"
// has a user and no password, but in "ann:/pw@h" the password is "/pw".
func authorityStart(s string) int {
	n := schemeLen(s)
	if n == 0 {
		return 0
	}
	switch rest := s[n:]; {
	case strings.HasPrefix(rest, "://"):
		return n + 3
	case strings.HasPrefix(rest, "//"):
		return n + 2 // no ':' before it, so no password either
	case strings.HasPrefix(rest, ":/") && knownScheme(s[:n]):
		return n + 2
	}
	return 0
}

// knownScheme reports whether name is a scheme a driver registered, one of
// kombu-go's transports has, or an alias of one.
func knownScheme(name string) bool {
	name = strings.ToLower(name)
	_, registered := Lookup(name)
	return registered || driverPackages[name] != "" || schemeAliases[name] != ""
}

// schemeLen returns the length of the scheme-like word s begins with: a
// letter, then letters, digits, '+', '-', '.' and '_'.
func schemeLen(s string) int {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.' || c == '_'):
		default:
			return i
		}
	}
	return len(s)
}

// missingSeparator says what is wrong with a URL that has no "scheme://"
// in front. It quotes no part of the URL that could hold a password.
func missingSeparator(raw string) string {
	if host, port, ok := hostAndPort(raw); ok {
		return fmt.Sprintf("missing scheme: %q is a host and port, and a broker URL begins with its transport, such as %s://%s:%s",
			host+":"+port, schemeForPort(port), host, port)
	}
	n := schemeLen(raw)
	name, after := raw[:n], raw[n:]
	switch {
	case n > 0 && strings.HasPrefix(after, ":/"):
		return fmt.Sprintf("%q has one slash after the scheme: write %s://", name+":/", name)
	case n > 0 && strings.HasPrefix(after, "//"):
		return fmt.Sprintf("missing ':' between the scheme and \"//\": write %s://", name)
	case n > 0 && strings.HasPrefix(after, ":") && knownScheme(name):
		return fmt.Sprintf("%q must be followed by \"//\": write %s://", name+":", name)
	}
	return "missing scheme: a broker URL begins with its transport, such as amqp://localhost:5672//, redis://localhost:6379/0 or memory://"
}

// hostAndPort recognizes "host:port", with an optional path after it: a URL
// without its scheme.
func hostAndPort(raw string) (host, port string, ok bool) {
	hostport, _, _ := strings.Cut(raw, "/")
	host, port, found := strings.Cut(hostport, ":")
	if !found || host == "" || len(port) == 0 || len(port) > 5 {
		return "", "", false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", "", false
		}
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", false
		}
	}
	return host, port, true
}

// schemeForPort guesses a URL's transport from its port: the brokers'
// default ports, else amqp.
func schemeForPort(port string) string {
	switch port {
	case "5671":
		return "amqps"
	case "6379", "6380":
		return "redis"
	case "26379":
		return "sentinel"
	}
	return "amqp"
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'):
		default:
			return false
		}
	}
	return true
}
