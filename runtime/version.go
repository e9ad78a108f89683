package kombu

import "github.com/kombu-go/kombu/internal/version"

// Version is the version of kombu-go. protoc-gen-kombu prints the same
// version with --version and writes it into the header of the code it
// generates.
const Version = version.Version

// IsAtLeastVersion0_1_0 is referenced by code that protoc-gen-kombu generates
// so that compiling it against an older runtime fails with a clear message
// rather than with missing identifiers. When a release adds something
// generated code needs, it adds a constant like this one for its version.
const IsAtLeastVersion0_1_0 = true
