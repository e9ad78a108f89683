// protoc-gen-kombu is a protoc plugin that generates typed kombu-go producers
// and consumers from proto services whose exchanges, queues and routes are
// declared with the options in kombu/v1/options.proto.
//
// For every proto file with services it writes <name>_kombu.pb.go beside
// protoc-gen-go's <name>.pb.go, in the same Go package. For a service Orders
// the file holds OrdersTopology, OrdersProducer and NewOrdersProducer,
// OrdersHandler and UnimplementedOrdersHandler, and NewOrdersConsumer.
//
// Install it, and protoc-gen-go, with:
//
//	go install github.com/kombu-go/kombu/cmd/protoc-gen-kombu@latest
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@latest
//
// Your protos import "kombu/v1/options.proto", which is in kombu-go's proto
// directory; its Go package is github.com/kombu-go/kombu/gen/kombu/v1, so
// generate code only for your own files, not for it.
//
// With protoc, put that directory on the import path:
//
//	protoc -I . -I path/to/kombu-go/proto \
//		--go_out=. --go_opt=paths=source_relative \
//		--kombu_out=. --kombu_opt=paths=source_relative \
//		orders.proto
//
// With buf, list a copy of that directory as a module of the workspace in
// buf.yaml, and generate your own protos only, with a buf.gen.yaml (version
// v2) such as:
//
//	version: v2
//	inputs:
//	  - directory: protos
//	plugins:
//	  - local: protoc-gen-go
//	    out: gen
//	    opt: paths=source_relative
//	  - local: protoc-gen-kombu
//	    out: gen
//	    opt: paths=source_relative
//
// The plugin takes protogen's standard parameters (paths=source_relative,
// module=<prefix>, M<file>=<import path>) and no others yet.
//
// protoc-gen-kombu --version prints its version, which is the version of the
// kombu-go runtime it generates code for.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/generator"
	"github.com/kombu-go/kombu/internal/version"
)

const usage = `Usage: protoc-gen-kombu [--version | --help]

protoc-gen-kombu is a protoc plugin: protoc and buf run it and talk to it
over stdin and stdout. See https://pkg.go.dev/github.com/kombu-go/kombu/cmd/protoc-gen-kombu
for how to run it from protoc or buf.

Flags:
  --version  print the version and exit
  --help     print this help and exit
`

func main() {
	if len(os.Args) > 1 {
		os.Exit(runFlags(os.Args[1:]))
	}
	// Plugin parameters other than protogen's own arrive here. There are
	// none yet; a FlagSet makes an unknown one an error now and a new one a
	// one-line change later.
	params := flag.NewFlagSet("protoc-gen-kombu", flag.ContinueOnError)
	generator.Options(func(name, value string) error {
		if err := params.Set(name, value); err != nil {
			return fmt.Errorf("unknown parameter %q", name)
		}
		return nil
	}).Run(generator.Generate)
}

// runFlags handles a command line, which protoc never passes, and returns
// the exit code.
func runFlags(args []string) int {
	arg := args[0]
	if len(args) > 1 {
		arg = strings.Join(args, " ")
	}
	switch arg {
	case "--version", "-version":
		fmt.Println("protoc-gen-kombu", version.Version)
		return 0
	case "--help", "-help", "-h":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "protoc-gen-kombu: unknown argument %q\n\n%s", arg, usage)
		return 1
	}
}
