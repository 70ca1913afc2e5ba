package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/eventually"
)

// TestPrometheusAlerts checks what ops load into Prometheus from
// deploy/prometheus: the configuration and rules parse, the rules' unit
// tests pass (each alert fires on its failure and not on the healthy
// series beside it), and every metric the rules name is one a service
// registers, so renaming a metric cannot silently disarm an alert.
func TestPrometheusAlerts(t *testing.T) {
	promtool := prometheusTool(t, "promtool")
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
	promtool := prometheusTool(t, "promtool")
	dash := loadDashboard(t)
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

// TestPrometheusScrapesThePipeline runs the pipeline and a real Prometheus
// (Debian's) scraping it with deploy/prometheus's rules: every target is up,
// every dashboard query returns series, and a healthy pipeline fires no
// alert. Before any traffic, every labelled counter that an alert or panel
// reads is exported at zero for each known label (checkZeroAtStart).
func TestPrometheusScrapesThePipeline(t *testing.T) {
	prom := prometheusTool(t, "prometheus")
	const key = "alm_e2e_prom_key_0123456789abcdef"
	s := newStack(t, key)
	checkZeroAtStart(t, s)
	for i := range 5 {
		if status, body := s.post(fmt.Sprintf(`{"client_id":"shop","url":"https://shop.example/p%d","event_id":"prom-%d"}`, i, i)); status != 202 {
			t.Fatalf("POST = %d %s", status, body)
		}
	}
	s.waitForCounts(key, 5, 1, 5, 15*time.Second)

	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n", rules)
	for _, name := range services {
		fmt.Fprintf(&cfg, "  - job_name: alumini-%s\n    static_configs: [{targets: [%q]}]\n", name, s.admin[name])
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	var promLog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &promLog, &promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})
	// Until it loaded its configuration and storage, Prometheus answers
	// queries with 503 and a text body.
	eventually.True(t, 30*time.Second, "prometheus to be ready", func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	query := func(q string) []json.RawMessage {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
			t.Fatalf("query %s: %v (status %q)", q, err, r.Status)
		}
		return r.Data.Result
	}
	// Every target up, scraped for a few seconds so rates have two points.
	if !eventually.Within(30*time.Second, func() bool { return len(query(`up{job=~"alumini-.*"} == 1`)) >= len(services) }) {
		t.Fatalf("not every service is scraped within 30s: up = %s", query(`up`))
	}
	// Two scrapes of every target inside the 10s windows the dashboard's
	// queries are run with below, so that rates have two points.
	eventually.True(t, 30*time.Second, "two scrapes of every service within 10s", func() bool {
		return len(query(`count_over_time(up{job=~"alumini-.*"}[10s]) >= 2`)) >= len(services)
	})
	// And every rule group evaluated since, so that ALERTS reflects them.
	scraped := time.Now()
	eventually.True(t, 30*time.Second, "every rule group to be evaluated on the scraped data", func() bool {
		resp, err := http.Get("http://" + addr + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct{ LastEvaluation time.Time }
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Data.Groups) == 0 {
			return false
		}
		for _, g := range r.Data.Groups {
			if !g.LastEvaluation.After(scraped) {
				return false
			}
		}
		return true
	})

	dash := loadDashboard(t)
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			if len(query(strings.ReplaceAll(q.Expr, "[5m]", "[10s]"))) == 0 {
				t.Errorf("dashboard panel %q: query %s returns nothing from a running pipeline", p.Title, q.Expr)
			}
		}
	}
	// Pending as well as firing: every alert waits a minute or more before
	// it fires (its for:), longer than this test runs, so a rule that
	// matches a healthy pipeline shows only as pending here.
	if alerts := query(`ALERTS`); len(alerts) > 0 {
		t.Errorf("a healthy pipeline has pending or firing alerts: %s", alerts)
	}
}

// prometheusTool finds a binary of Debian's prometheus package.
func prometheusTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (Debian's prometheus package; `make deps` installs it): %v", name, err)
	}
	return path
}

// dashboard is what the tests read of deploy/grafana/alumini.json.
type dashboard struct {
	UID    string
	Panels []struct {
		Type, Title string
		Targets     []struct{ Expr string }
	}
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "alumini.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("alumini.json: %v", err)
	}
	return d
}
