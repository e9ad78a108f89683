package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	kombuproto "github.com/kombu-go/kombu/proto"
)

// protoSource is where proto definitions come from: --proto (a .proto file,
// compiled here with protocompile) or --descriptor-set (protoc
// --include_imports -o, or buf build -o).
type protoSource struct {
	file       string
	importPath stringList
	set        string
}

func (p *protoSource) flags(fs_ *flag.FlagSet) {
	fs_.StringVar(&p.file, "proto", "", "a .proto file to read message types (and, for declare, the topology) from")
	fs_.Var(&p.importPath, "I", "an import path for --proto (repeatable; default: the file's directory). kombu/v1/options.proto and google/protobuf/* are built in")
	fs_.StringVar(&p.set, "descriptor-set", "", "a FileDescriptorSet file (protoc --include_imports -o, buf build -o) instead of --proto")
}

func (p *protoSource) given() bool { return p.file != "" || p.set != "" }

// load returns the descriptor set and the names of the files it was asked
// for (the --proto file; every file of a --descriptor-set).
func (p *protoSource) load(ctx context.Context) (*descriptorpb.FileDescriptorSet, []string, error) {
	switch {
	case p.file != "" && p.set != "":
		return nil, nil, usagef("give --proto or --descriptor-set, not both")
	case p.set != "":
		b, err := os.ReadFile(p.set)
		if err != nil {
			return nil, nil, usagef("--descriptor-set: %v", err)
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(b, &set); err != nil {
			return nil, nil, usagef("--descriptor-set %s: not a FileDescriptorSet: %v", p.set, err)
		}
		return &set, nil, nil
	case p.file != "":
		return p.compile(ctx)
	}
	return nil, nil, usagef("give --proto or --descriptor-set")
}

// compile compiles the --proto file with protocompile, resolving imports
// from the import paths, then kombu/v1/options.proto and the well-known
// types built in.
func (p *protoSource) compile(ctx context.Context) (*descriptorpb.FileDescriptorSet, []string, error) {
	if _, err := os.Stat(p.file); err != nil {
		return nil, nil, usagef("--proto: %v", err)
	}
	paths := []string(p.importPath)
	name := filepath.Base(p.file)
	if len(paths) == 0 {
		paths = []string{filepath.Dir(p.file)}
	} else {
		abs, _ := filepath.Abs(p.file)
		found := false
		for _, ip := range paths {
			ipAbs, _ := filepath.Abs(ip)
			if rel, err := filepath.Rel(ipAbs, abs); err == nil && !strings.HasPrefix(rel, "..") {
				name, found = filepath.ToSlash(rel), true
				break
			}
		}
		if !found {
			return nil, nil, usagef("--proto %s is under none of the import paths %v", p.file, paths)
		}
	}
	accessor := func(path string) (io.ReadCloser, error) {
		for _, ip := range paths {
			f, err := os.Open(filepath.Join(ip, filepath.FromSlash(path)))
			if err == nil {
				return f, nil
			}
		}
		if path == kombuproto.OptionsPath {
			return io.NopCloser(strings.NewReader(kombuproto.Options)), nil
		}
		return nil, fs.ErrNotExist
	}
	var reports []string
	compiler := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{Accessor: accessor}),
		SourceInfoMode: protocompile.SourceInfoStandard,
		Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
			reports = append(reports, err.Error())
			return nil // go on: report every error, not the first only
		}, nil),
	}
	files, err := compiler.Compile(ctx, name)
	if err != nil {
		if len(reports) > 0 {
			return nil, nil, usagef("%s does not compile:\n  %s", p.file, strings.Join(reports, "\n  "))
		}
		return nil, nil, usagef("%s does not compile: %v", p.file, err)
	}
	return descriptorSet(files), []string{name}, nil
}

// descriptorSet lists files with every dependency, dependencies first, as
// protoc --include_imports writes a set. Options travel as bytes and are
// read back with the linked extension types, so that the kombu options
// are known fields to the topology reader.
func descriptorSet(files linker.Files) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		if b, err := proto.Marshal(fdp); err == nil {
			clean := &descriptorpb.FileDescriptorProto{}
			if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, clean); err == nil {
				fdp = clean
			}
		}
		set.File = append(set.File, fdp)
	}
	for _, f := range files {
		add(f)
	}
	return set
}

// protoTypes finds message types for protobuf bodies.
type protoTypes struct{ files *protoregistry.Files }

func newProtoTypes(set *descriptorpb.FileDescriptorSet) (*protoTypes, error) {
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, usagef("the proto definitions do not link: %v", err)
	}
	return &protoTypes{files: files}, nil
}

// messageFor returns the message type named by --message, or else by the
// message's type property: a message's full name, or a method's (what
// protoc-gen-kombu's producers send), whose request type is then meant.
func (p *protoTypes) messageFor(explicit, typeProp string) (protoreflect.MessageDescriptor, error) {
	name := explicit
	if name == "" {
		name = typeProp
	}
	if name == "" {
		return nil, errors.New("the message has no type property: name its type with --message")
	}
	d, err := p.files.FindDescriptorByName(protoreflect.FullName(strings.TrimPrefix(name, ".")))
	if err != nil {
		return nil, fmt.Errorf("type %q is in none of the proto files given: %w", name, err)
	}
	switch x := d.(type) {
	case protoreflect.MessageDescriptor:
		return x, nil
	case protoreflect.MethodDescriptor:
		return x.Input(), nil
	}
	return nil, fmt.Errorf("%q is not a message or method", name)
}

type protoUnmarshal struct{}

func (protoUnmarshal) unmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
