package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"

	kombu "github.com/kombu-go/kombu/runtime"
)

// These tests run the built binaries: protoc-gen-kombu's command line, and
// protoc driving it the way users do.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds protoc-gen-kombu and, from this module so that its
// version is the one in go.mod, protoc-gen-go, once per test run.
func binaries(t *testing.T) (kombuPlugin, goPlugin string) {
	t.Helper()
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "protoc-gen-kombu-test"); binErr != nil {
			return
		}
		for _, pkg := range []string{".", "google.golang.org/protobuf/cmd/protoc-gen-go"} {
			out, err := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), pkg).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "protoc-gen-kombu"+exe), filepath.Join(binDir, "protoc-gen-go"+exe)
}

func TestVersion(t *testing.T) {
	plugin, _ := binaries(t)
	out, err := exec.Command(plugin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "protoc-gen-kombu " + kombu.Version + "\n"; string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
}

func TestHelp(t *testing.T) {
	plugin, _ := binaries(t)
	out, err := exec.Command(plugin, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "Usage: protoc-gen-kombu") {
		t.Errorf("--help printed %q", out)
	}
}

// TestLinksNoRuntime keeps the plugin free of the runtime: it needs the
// version string and topic matching, which live in packages of their own
// (internal/version, internal/topic). Linking the runtime would bring every
// codec library and the in-process broker, which registers itself in the
// plugin process: twice the packages and the binary size for nothing.
func TestLinksNoRuntime(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/generator") {
		t.Fatalf("go list -deps does not list the generator: %q", deps)
	}
	for _, pkg := range deps {
		for _, banned := range []string{"github.com/kombu-go/kombu/runtime", "github.com/kombu-go/kombu/transports"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") {
				t.Errorf("protoc-gen-kombu depends on %s", pkg)
			}
		}
	}
}

func TestUnknownArgument(t *testing.T) {
	plugin, _ := binaries(t)
	var stderr bytes.Buffer
	cmd := exec.Command(plugin, "--frobnicate")
	cmd.Stderr = &stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), `unknown argument "--frobnicate"`) || !strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestUnknownParameter(t *testing.T) {
	plugin, _ := binaries(t)
	req, err := proto.Marshal(&pluginpb.CodeGeneratorRequest{Parameter: proto.String("paths=source_relative,frobnicate=yes")})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(plugin)
	cmd.Stdin = bytes.NewReader(req)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("an unknown parameter was accepted")
	}
	if !strings.Contains(stderr.String(), `unknown parameter "frobnicate"`) {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestProtoc runs protoc with protoc-gen-go and protoc-gen-kombu on the
// golden-test protos, with paths=source_relative, and checks that the
// output is what buf generated into internal/testgen: the same files,
// byte for byte but for the header line naming the protoc version, which
// buf leaves unknown.
func TestProtoc(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		if os.Getenv("KOMBU_REQUIRE_PROTOC") == "1" {
			t.Fatal("protoc is not on PATH and KOMBU_REQUIRE_PROTOC=1")
		}
		t.Skip("protoc is not on PATH (KOMBU_REQUIRE_PROTOC=1 makes this a failure)")
	}
	kombuPlugin, goPlugin := binaries(t)
	out := t.TempDir()
	protos := []string{"kombutest/v1/orders.proto", "kombutest/v1/events.proto", "kombutest/v1/pricing.proto", "kombutest/names/v1/names.proto"}
	cmd := exec.Command(protoc, append([]string{
		"-I", "testdata/proto", "-I", "../../proto",
		"--plugin=protoc-gen-kombu=" + kombuPlugin, "--plugin=protoc-gen-go=" + goPlugin,
		"--kombu_out=" + out, "--kombu_opt=paths=source_relative",
		"--go_out=" + out, "--go_opt=paths=source_relative",
	}, protos...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}

	// protoc-gen-go writes "// \tprotoc        v3.21.12", protoc-gen-kombu "// - protoc v3.21.12".
	protocLine := regexp.MustCompile(`(?m)^// (- |\t)protoc +.*\n`)
	for _, p := range protos {
		for _, suffix := range []string{"_kombu.pb.go", ".pb.go"} {
			name := strings.TrimSuffix(p, ".proto") + suffix
			got, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Error(err)
				continue
			}
			want, err := os.ReadFile(filepath.Join("internal", "testgen", name))
			if err != nil {
				t.Error(err)
				continue
			}
			if !protocLine.Match(got) {
				t.Errorf("%s: no protoc version line in the header", name)
			}
			if !bytes.Equal(protocLine.ReplaceAll(got, nil), protocLine.ReplaceAll(want, nil)) {
				t.Errorf("%s: protoc's output differs from buf's (internal/testgen)", name)
			}
		}
	}
}
