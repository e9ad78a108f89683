// Package prototopology reads the kombu options of compiled proto files and
// returns each service's topology as runtime values: what the generated
// XTopology functions return, with the same checks and defaults, for tools
// that work from a .proto file or a descriptor set at run time instead of
// generated code (the kombu command's declare verb).
//
// It shares protoc-gen-kombu's model, so that a file the plugin refuses is
// refused here with the same error, and a topology declared from the file
// is the one the generated code declares.
package prototopology

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/generator"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Service is the topology of one proto service.
type Service struct {
	Name     string // the service's full proto name
	Topology kombu.Topology
}

// FromDescriptorSet returns the topologies of the services in the files of
// set named by files (every file in the set when files is empty). The set
// must hold each file's imports, as protoc --include_imports and buf build
// write it.
func FromDescriptorSet(set *descriptorpb.FileDescriptorSet, files ...string) ([]Service, error) {
	if len(files) == 0 {
		for _, f := range set.GetFile() {
			if !strings.HasPrefix(f.GetName(), "google/protobuf/") && f.GetName() != "kombu/v1/options.proto" {
				files = append(files, f.GetName())
			}
		}
	}
	// protogen wants a Go import path for every file; the topology does not
	// depend on it, so a file without go_package gets a placeholder.
	var params []string
	for _, f := range set.GetFile() {
		if f.GetOptions().GetGoPackage() == "" {
			params = append(params, "M"+f.GetName()+"=kombu.invalid/"+strings.TrimSuffix(f.GetName(), ".proto"))
		}
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		ProtoFile:      set.GetFile(),
	}
	if len(params) > 0 {
		p := strings.Join(params, ",")
		req.Parameter = &p
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("prototopology: %w", err)
	}
	var out []Service
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		models, err := generator.FileModels(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Desc.Path(), err)
		}
		for _, m := range models {
			out = append(out, Service{Name: m.Service, Topology: topologyValue(m)})
		}
	}
	return out, nil
}
