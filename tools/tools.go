//go:build tools

// Package tools pins the development tools that are not part of the main
// module: buf (code generation) and staticcheck (make lint). protoc-gen-go is
// run from the main module instead, so the code it writes always matches the
// protobuf runtime the SDK depends on.
package tools

import (
	_ "github.com/bufbuild/buf/cmd/buf"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
