// Package version holds kombu-go's version, the one place both the runtime
// (as kombu.Version) and protoc-gen-kombu (in --version and the header of
// the code it generates) read it from. It imports nothing, so the plugin
// stays free of the runtime and its transports.
package version

// Version is the version of kombu-go: of the runtime, and of the
// protoc-gen-kombu that generates code for it.
const Version = "0.1.0"
