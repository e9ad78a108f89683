package transport

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// The scheme registry is the only package-level state in kombu-go, as
// database/sql's driver registry is for that package.
var (
	registryMu sync.RWMutex
	registry   = map[string]Driver{}
)

// Register makes a driver available under a URL scheme. It is meant to be
// called from a driver package's init and panics if the scheme is taken or
// the driver is nil, since either is a programming error.
func Register(scheme string, d Driver) {
	if d == nil {
		panic("transport: Register driver is nil")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic(fmt.Sprintf("transport: Register called twice for scheme %q", scheme))
	}
	registry[scheme] = d
}

// Lookup returns the driver registered for scheme.
func Lookup(scheme string) (Driver, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	d, ok := registry[scheme]
	return d, ok
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// driverPackages are the schemes kombu-go's transports register, each with
// the package that registers it.
var driverPackages = map[string]string{
	"amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp",
	"redis": "redis", "rediss": "redis", "sentinel": "redis",
	"memory":     "memory",
	"filesystem": "filesystem",
	"sqla":       "sqldb", "sqlalchemy": "sqldb", "postgres": "sqldb", "postgresql": "sqldb", "mysql": "sqldb", "sqlite": "sqldb",
	"gcpubsub": "gcpubsub", "azurestoragequeues": "azurequeues",
	"sqs": "sqs", "mongodb": "mongodb",
}

// schemeAliases are names people write for a transport, with the scheme
// to write instead.
var schemeAliases = map[string]string{
	"rabbitmq": "amqp", "rabbit": "amqp", "rmq": "amqp", "amqp091": "amqp", "amqp0-9-1": "amqp",
	"rabbitmqs": "amqps", "amqp-ssl": "amqps", "amqp-tls": "amqps",
	"redis-sentinel": "sentinel", "redissentinel": "sentinel",
	"valkey": "redis", "keydb": "redis", "redis-tls": "rediss", "redis-ssl": "rediss",
	"mem": "memory", "inmemory": "memory", "in-memory": "memory",
	"fs": "filesystem", "file": "filesystem", "files": "filesystem", "folder": "filesystem", "dir": "filesystem",
	"pg": "postgresql", "pgsql": "postgresql", "psql": "postgresql", "mariadb": "mysql", "sqlite3": "sqlite",
}

// otherTransports are Kombu's transports that kombu-go has no driver for
// (yet): a scheme of theirs is not a typo of one of ours ("etcd" is not
// "sqla").
var otherTransports = map[string]bool{
	"zookeeper": true, "consul": true, "etcd": true, "confluentkafka": true,
	"kafka": true, "azureservicebus": true, "pyro": true, "slmq": true, "qpid": true,
}

// DriverPackage names the package that registers a scheme kombu-go knows
// about, so an unknown-scheme error can tell the user what to import.
func DriverPackage(scheme string) (string, bool) {
	pkg, ok := driverPackages[scheme]
	if !ok {
		return "", false
	}
	return "github.com/kombu-go/kombu/transports/" + pkg, true
}

// SuggestScheme returns the scheme a user most likely meant by an unknown
// one: the scheme an alias stands for ("rabbitmq": "amqp"), or else the
// registered or known scheme nearest by edit distance, if it is close
// ("ampq": "amqp", "reddis": "redis").
func SuggestScheme(scheme string) (string, bool) {
	s := strings.ToLower(scheme)
	if to, ok := schemeAliases[s]; ok {
		return to, true
	}
	if _, ours := driverPackages[s]; ours && s == scheme || otherTransports[s] {
		return "", false // a transport's scheme, not a typo: its package is not imported
	}
	candidates := Schemes()
	for known := range driverPackages {
		candidates = append(candidates, known)
	}
	sort.Strings(candidates) // ties go to the first in order, the same every time
	best, bestDist := "", 3  // more than two edits apart is not a typo
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist && d <= len(c)/2 && c != scheme {
			best, bestDist = c, d
		}
	}
	return best, best != ""
}

// editDistance is the optimal string alignment distance between a and b:
// the insertions, deletions, substitutions and transpositions of adjacent
// bytes that turn a into b. Schemes are short ASCII words, so the table is
// small.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
