// Package uacorpus loads the uap-core test corpora (github.com/ua-parser/uap-core,
// Apache-2.0, copied into enricher/testdata/uap-core) for tests and
// benchmarks of any enricher package.
package uacorpus

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Case is one case of test_ua.yaml, test_os.yaml or test_device.yaml.
type Case struct {
	UA     string `yaml:"user_agent_string"`
	Family string `yaml:"family"`
	Major  string `yaml:"major"`
	Brand  string `yaml:"brand"`
	Model  string `yaml:"model"`
}

// Load returns the cases of the named file ("test_ua.yaml", ...).
func Load(tb testing.TB, name string) []Case {
	tb.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("uacorpus: cannot locate the source tree")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "..", "testdata", "uap-core", name)
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Cases []Case `yaml:"test_cases"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		tb.Fatalf("parsing %s: %v", name, err)
	}
	return doc.Cases
}

// UserAgents returns the user agents of the named file.
func UserAgents(tb testing.TB, name string) []string {
	tb.Helper()
	cases := Load(tb, name)
	out := make([]string, len(cases))
	for i, c := range cases {
		out[i] = c.UA
	}
	return out
}
