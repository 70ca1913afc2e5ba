package proto

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
	// The plugins are the module's tools (go.mod), at the versions `make
	// proto` runs.
	args := []string{"--go_out=" + tmp, "--go_opt=paths=source_relative",
		"--go-vtproto_out=" + tmp, "--go-vtproto_opt=paths=source_relative,features=" + vtprotoFeatures}
	for _, tool := range []struct{ name, pkg string }{
		{"protoc-gen-go", "google.golang.org/protobuf/cmd/protoc-gen-go"},
		{"protoc-gen-go-vtproto", "github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto"},
	} {
		plugin := filepath.Join(tmp, tool.name)
		if out, err := exec.Command("go", "build", "-o", plugin, tool.pkg).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", tool.name, err, out)
		}
		args = append(args, "--plugin="+tool.name+"="+plugin)
	}
	sources, err := filepath.Glob("alumini/v1/*.proto")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no .proto files found: %v", err)
	}
	if out, err := exec.Command(protoc, append(args, sources...)...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	for _, src := range sources {
		base := strings.TrimSuffix(src, ".proto")
		for _, gen := range []string{base + ".pb.go", base + "_vtproto.pb.go"} {
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
}

// vtprotoFeatures are the vtprotobuf methods generated: only the
// unmarshaller whose strings alias the input, for the sinker's hot path.
const vtprotoFeatures = "unmarshal_unsafe"
