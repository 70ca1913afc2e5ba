package e2e

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPrometheusAlerts checks what ops load into Prometheus from
// deploy/prometheus: the configuration and rules parse, the rules' unit
// tests pass (each alert fires on its failure and not on the healthy
// series beside it), and every metric the rules name is one a service
// registers, so renaming a metric cannot silently disarm an alert.
func TestPrometheusAlerts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian's prometheus package; `make deps` installs it): %v", err)
	}
	dir := filepath.Join("..", "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "config", "prometheus-compose.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	name := regexp.MustCompile(`Name:\s*"(alumini_[a-z_]+)"`)
	for _, module := range []string{"collector", "enricher", "sinker", "reporter", "lib"} {
		err := filepath.WalkDir(filepath.Join("..", module), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			for _, m := range name.FindAllSubmatch(src, -1) {
				registered[string(m[1])] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	used := regexp.MustCompile(`alumini_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 10 {
		t.Fatalf("found %d metric names in alerts.yml; the pattern no longer matches the rules", len(used))
	}
	for _, m := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if !registered[m] && !registered[base] {
			t.Errorf("alerts.yml uses %s, which no service registers", m)
		}
	}
}
