package e2e

import (
	"encoding/json"
	"fmt"
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
	checkMetricNames(t, "alerts.yml", string(rules))
}

// TestGrafanaDashboard checks deploy/grafana/alumini.json: it is a
// dashboard, every panel query is valid PromQL (promtool checks them as
// recording rules), and every metric a query names is one a service
// registers.
func TestGrafanaDashboard(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian's prometheus package; `make deps` installs it): %v", err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "alumini.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("alumini.json: %v", err)
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
			fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %q\n", len(exprs), q.Expr)
		}
	}
	if dash.UID == "" || len(exprs) < 15 {
		t.Fatalf("dashboard uid %q with %d queries; want a uid and every service's panels", dash.UID, len(exprs))
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("a dashboard query is not valid PromQL: %v\n%s", err, out)
	}
	checkMetricNames(t, "alumini.json", strings.Join(exprs, "\n"))
}

// checkMetricNames fails for every alumini_ metric in text (from source)
// that no service registers.
func checkMetricNames(t *testing.T, source, text string) {
	t.Helper()
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
	used := regexp.MustCompile(`alumini_[a-z_]+`).FindAllString(text, -1)
	if len(used) < 10 {
		t.Fatalf("found %d metric names in %s; the pattern no longer matches it", len(used), source)
	}
	for _, m := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if !registered[m] && !registered[base] {
			t.Errorf("%s uses %s, which no service registers", source, m)
		}
	}
}
