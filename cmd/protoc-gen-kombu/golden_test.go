package main

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/generator"
)

// The golden test works as connect-go's does: no protoc or buf at test time.
// `make generate` builds the test protos into a descriptor set with buf and
// generates their Go into internal/testgen; the test runs the generator in
// process on that descriptor set and compares with internal/testgen.

var update = flag.Bool("update", false, "rewrite the golden _kombu.pb.go files in internal/testgen")

const (
	descriptorSet = "testdata/kombutest.binpb"
	goldenDir     = "internal/testgen"
	goldenModule  = "module=github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen"
)

// testFiles loads the test protos and everything they import, in
// dependency order.
func testFiles(t *testing.T) []*descriptorpb.FileDescriptorProto {
	t.Helper()
	data, err := os.ReadFile(descriptorSet)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	return set.GetFile()
}

// isTestProto tells the test protos from their imports.
func isTestProto(f *descriptorpb.FileDescriptorProto) bool {
	return strings.HasPrefix(f.GetName(), "kombutest/")
}

// request returns a CodeGeneratorRequest, as buf sends it (no compiler
// version), asking for every test proto.
func request(files []*descriptorpb.FileDescriptorProto, parameter string) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{ProtoFile: files}
	if parameter != "" {
		req.Parameter = proto.String(parameter)
	}
	for _, f := range files {
		if isTestProto(f) {
			req.FileToGenerate = append(req.FileToGenerate, f.GetName())
		}
	}
	return req
}

// run runs the generator as protogen.Options.Run would.
func run(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	gen, err := generator.Options(nil).New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := generator.Generate(gen); err != nil {
		gen.Error(err)
	}
	return gen.Response()
}

// generated runs the generator and returns its files by name, failing on a
// generation error.
func generated(t *testing.T, req *pluginpb.CodeGeneratorRequest) map[string]string {
	t.Helper()
	resp := run(t, req)
	if resp.Error != nil {
		t.Fatalf("generation failed: %s", resp.GetError())
	}
	out := make(map[string]string)
	for _, f := range resp.GetFile() {
		out[f.GetName()] = f.GetContent()
	}
	return out
}

func TestGolden(t *testing.T) {
	got := generated(t, request(testFiles(t), goldenModule))

	want := goldenFiles(t)
	var names []string
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)

	if *update {
		for _, name := range names {
			path := filepath.Join(goldenDir, filepath.FromSlash(name))
			if err := os.WriteFile(path, []byte(got[name]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if !slices.Equal(names, want) {
		t.Errorf("generated files %q, golden files %q (run make generate)", names, want)
	}
	for _, name := range names {
		golden, err := os.ReadFile(filepath.Join(goldenDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v (run go test -update)", name, err)
			continue
		}
		if string(golden) != got[name] {
			t.Errorf("%s differs from its golden file; run go test ./cmd/protoc-gen-kombu/... -update and review the diff", name)
		}
	}
}

// goldenFiles lists the _kombu.pb.go files under goldenDir, sorted, as
// slash-separated paths relative to it.
func goldenFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(goldenDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_kombu.pb.go") {
			return err
		}
		rel, err := filepath.Rel(goldenDir, path)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestSourceRelative checks that paths=source_relative changes where files
// go and nothing else.
func TestSourceRelative(t *testing.T) {
	files := testFiles(t)
	byModule := generated(t, request(files, goldenModule))
	bySource := generated(t, request(files, "paths=source_relative"))

	for _, f := range files {
		if !isTestProto(f) {
			continue
		}
		name := strings.TrimSuffix(f.GetName(), ".proto") + "_kombu.pb.go"
		got, ok := bySource[name]
		if !ok {
			t.Errorf("paths=source_relative: no %s among %d files", name, len(bySource))
			continue
		}
		if got != byModule[name] {
			t.Errorf("%s: paths=source_relative and module= generate different code", name)
		}
	}
}

// TestDeterministic runs the generator twice on the same input.
func TestDeterministic(t *testing.T) {
	files := testFiles(t)
	first := generated(t, request(files, goldenModule))
	for range 3 {
		again := generated(t, request(files, goldenModule))
		for name, content := range first {
			if !bytes.Equal([]byte(content), []byte(again[name])) {
				t.Fatalf("%s: two runs on the same input generated different code", name)
			}
		}
	}
}

// TestResponseFeatures checks what the plugin tells protoc and buf it
// supports.
func TestResponseFeatures(t *testing.T) {
	resp := run(t, request(testFiles(t), ""))
	want := uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	if resp.GetSupportedFeatures() != want {
		t.Errorf("supported features %b, want %b", resp.GetSupportedFeatures(), want)
	}
	if resp.GetMinimumEdition() != int32(descriptorpb.Edition_EDITION_PROTO2) || resp.GetMaximumEdition() != int32(descriptorpb.Edition_EDITION_2024) {
		t.Errorf("editions %d..%d, want PROTO2..2024", resp.GetMinimumEdition(), resp.GetMaximumEdition())
	}
}

// TestNoServices checks that a file without services gets no file at all.
func TestNoServices(t *testing.T) {
	var files []*descriptorpb.FileDescriptorProto
	for _, f := range testFiles(t) {
		if f.GetName() == "kombu/v1/options.proto" || f.GetName() == "google/protobuf/descriptor.proto" {
			files = append(files, f)
		}
	}
	req := request(files, "")
	req.FileToGenerate = []string{"kombu/v1/options.proto"}
	if got := generated(t, req); len(got) != 0 {
		t.Errorf("generated %d files for a file without services", len(got))
	}
}
