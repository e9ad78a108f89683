//go:build tools

// Package tools pins buf, the one code-generation tool that is not part of
// the main module. protoc-gen-go is run from the main module instead, so the
// code it writes always matches the protobuf runtime the SDK depends on.
package tools

import _ "github.com/bufbuild/buf/cmd/buf"
