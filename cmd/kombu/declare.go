package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/prototopology"
	kombuproto "github.com/kombu-go/kombu/proto"
	kombu "github.com/kombu-go/kombu/runtime"
)

func declareVerb() *verb {
	var src protoSource
	var dryRun bool
	return &verb{
		name:    "declare",
		summary: "declare the topology of a .proto file's kombu options",
		usage:   "",
		help: `Declares on the broker the exchanges, queues and bindings that a proto
file's kombu options describe: what the generated XTopology functions
declare, from the file itself (compiled with protocompile; imports from -I,
with kombu/v1/options.proto and google/protobuf/* built in) or from a
descriptor set. The file is checked as protoc-gen-kombu checks it. Queues
a consumer owns (broadcast queues, which the broker names, and exclusive
ones) are left out: they exist only while their consumer runs.

Example:
  kombu declare --url amqp://guest:guest@localhost// --proto proto/shop/v1/shop.proto -I proto
  buf build -o shop.binpb && kombu declare --descriptor-set shop.binpb --dry-run`,
		flags: func(fs *flag.FlagSet, e *env) {
			src.flags(fs)
			fs.BoolVar(&dryRun, "dry-run", false, "print the topology, declare nothing")
		},
		run: func(e *env, args []string) error {
			if len(args) > 0 {
				return usagef("declare takes no arguments (got %q); give --proto or --descriptor-set", args)
			}
			set, files, err := src.load(e.ctx)
			if err != nil {
				return err
			}
			services, err := prototopology.FromDescriptorSet(set, files...)
			if err != nil {
				return usagef("%v", err)
			}
			if len(services) == 0 {
				return usagef("no service with kombu options in %s", strings.Join(files, ", "))
			}
			var conn *kombu.Connection
			if !dryRun {
				if conn, err = e.dial(e.url); err != nil {
					return err
				}
				defer conn.Close()
			}
			for _, s := range services {
				t := s.Topology
				var kept []kombu.Queue
				for _, q := range t.Queues {
					if q.Name != "" && !q.Exclusive {
						kept = append(kept, q)
					}
				}
				t.Queues = kept
				if conn != nil {
					ctx, cancel := e.opCtx()
					err := t.Declare(ctx, conn)
					cancel()
					if err != nil {
						return fmt.Errorf("service %s: %w", s.Name, err)
					}
				}
				e.printTopology(s.Name, t, dryRun)
			}
			return nil
		},
	}
}

func (e *env) printTopology(service string, t kombu.Topology, dryRun bool) {
	verb := "declared"
	if dryRun {
		verb = "would declare"
	}
	if e.output == "json" {
		var exs, qs []map[string]any
		for _, ex := range t.Exchanges {
			exs = append(exs, map[string]any{"name": ex.Name, "type": exchangeType(ex)})
		}
		for _, q := range t.Queues {
			var bs []map[string]any
			for _, b := range q.Bindings {
				bs = append(bs, map[string]any{"exchange": b.Exchange, "routing_key": b.RoutingKey})
			}
			qs = append(qs, map[string]any{"name": q.Name, "bindings": bs})
		}
		writeJSON(e.stdout, map[string]any{"service": service, "dry_run": dryRun, "exchanges": exs, "queues": qs})
		return
	}
	fmt.Fprintf(e.stdout, "service %s: %s\n", service, verb)
	for _, ex := range t.Exchanges {
		fmt.Fprintf(e.stdout, "  exchange %s (%s)\n", ex.Name, exchangeType(ex))
	}
	for _, q := range t.Queues {
		var bs []string
		for _, b := range q.Bindings {
			bs = append(bs, fmt.Sprintf("%s[%s]", b.Exchange, b.RoutingKey))
		}
		sort.Strings(bs)
		fmt.Fprintf(e.stdout, "  queue %s <- %s\n", q.Name, strings.Join(bs, ", "))
	}
}

func exchangeType(ex kombu.Exchange) string {
	if ex.Type == "" {
		return string(kombu.ExchangeDirect)
	}
	return string(ex.Type)
}

func protoVerb() *verb {
	var force bool
	return &verb{
		name:    "proto",
		summary: "write kombu/v1/options.proto into a folder for buf or protoc",
		usage:   "<folder>",
		noURL:   true,
		help: `Writes kombu-go's proto options, kombu/v1/options.proto, under the folder
given (creating <folder>/kombu/v1/), so that a buf module or a protoc
include path rooted at that folder can import "kombu/v1/options.proto".
A file already there with other content is kept unless --force.

Example:
  kombu proto ./proto && protoc -I proto --go_out=. --kombu_out=. proto/shop/v1/shop.proto`,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.BoolVar(&force, "force", false, "overwrite a different options.proto")
		},
		run: func(e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want one folder (got %d arguments)", len(args))
			}
			path := filepath.Join(args[0], filepath.FromSlash(kombuproto.OptionsPath))
			status := "wrote"
			if old, err := os.ReadFile(path); err == nil {
				switch {
				case bytes.Equal(old, []byte(kombuproto.Options)):
					status = "up to date"
				case !force:
					return usagef("%s exists with other content (another kombu-go version?); --force overwrites it", path)
				default:
					status = "overwrote"
				}
			}
			if status != "up to date" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return usagef("%v", err)
				}
				if err := os.WriteFile(path, []byte(kombuproto.Options), 0o644); err != nil {
					return usagef("%v", err)
				}
			}
			if e.output == "json" {
				writeJSON(e.stdout, map[string]any{"path": path, "status": status})
			} else {
				fmt.Fprintf(e.stdout, "%s %s\n", status, path)
			}
			return nil
		},
	}
}
