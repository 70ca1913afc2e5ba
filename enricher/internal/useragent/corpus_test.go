package useragent

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// uapCase is one case of the uap-core corpora (github.com/ua-parser/uap-core,
// Apache-2.0), copied into testdata/uap-core with its licence.
type uapCase struct {
	UA     string `yaml:"user_agent_string"`
	Family string `yaml:"family"`
	Major  string `yaml:"major"`
	Brand  string `yaml:"brand"`
	Model  string `yaml:"model"`
}

func loadUAP(t testing.TB, name string) []uapCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "uap-core", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []uapCase `yaml:"test_cases"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return doc.Cases
}
