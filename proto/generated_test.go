package proto

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// protocVersionLine is the one line of generated code that depends on the
// local protoc build rather than on the schema, so it is left out of the
// comparison: a contributor with another protoc must not see a false alarm.
var protocVersionLine = regexp.MustCompile(`(?m)^//\s+protoc\s+v[^\n]*\n`)

// TestGeneratedCodeIsCurrent regenerates the Go code from the .proto files
// and fails when it differs from what is committed: run `make proto`.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatalf("protoc not found (install Debian's protobuf-compiler, or run `make deps`): %v", err)
	}
	tmp := t.TempDir()
	plugin := filepath.Join(tmp, "protoc-gen-go")
	build := exec.Command("go", "build", "-o", plugin, "google.golang.org/protobuf/cmd/protoc-gen-go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building protoc-gen-go: %v\n%s", err, out)
	}
	sources, err := filepath.Glob("alumini/v1/*.proto")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no .proto files found: %v", err)
	}
	args := append([]string{"--plugin=protoc-gen-go=" + plugin, "--go_out=" + tmp, "--go_opt=paths=source_relative"}, sources...)
	if out, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	for _, src := range sources {
		gen := src[:len(src)-len(".proto")] + ".pb.go"
		want, err := os.ReadFile(filepath.Join(tmp, gen))
		if err != nil {
			t.Fatalf("reading regenerated %s: %v", gen, err)
		}
		got, err := os.ReadFile(gen)
		if err != nil {
			t.Fatalf("reading committed %s: %v (run `make proto`)", gen, err)
		}
		if !bytes.Equal(protocVersionLine.ReplaceAll(got, nil), protocVersionLine.ReplaceAll(want, nil)) {
			t.Errorf("%s is stale: it differs from what %s generates; run `make proto` and commit the result", gen, src)
		}
	}
}
