package transport

import (
	"fmt"
	"sort"
	"sync"
)

// The scheme registry is the only package-level state in kombu-go besides the
// optional global pools, as database/sql's driver registry is for that package.
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

// DriverPackage names the package that registers a scheme kombu-go knows
// about, so an unknown-scheme error can tell the user what to import.
func DriverPackage(scheme string) (string, bool) {
	const base = "github.com/kombu-go/kombu/transports/"
	switch scheme {
	case "amqp", "amqps", "pyamqp", "librabbitmq":
		return base + "amqp", true
	case "redis", "rediss", "sentinel":
		return base + "redis", true
	case "memory":
		return base + "memory", true
	}
	return "", false
}
