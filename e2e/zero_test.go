package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// knownLabels are, per service, the label values of every labelled counter
// an alert or the dashboard reads, as name{label="value",...} with labels
// in Prometheus' (sorted) order. Each must be exported at 0 from the start:
// increase() and rate() cannot see the increment that makes a series
// appear, so an alert on a series that does not exist yet misses the first
// event it is for.
var knownLabels = map[string][]string{
	"collector": append(
		labelled("alumini_collector_events_dropped_total", "reason", "opt_out", "dnt", "gpc", "excluded_ip", "excluded_hostname",
			"excluded_path", "unsupported_type", "invalid", "unknown_client", "forbidden_origin", "rate_limited", "too_large",
			"overloaded", "unavailable", "header_too_large", "malformed_request", "read_timeout"),
		crossed("alumini_collector_requests_total", []string{"500", "503"}, "event", "batch", "segment_track", "segment_page",
			"segment_screen", "segment_identify", "segment_batch", "segment_other", "umami", "pixel", "script", "optout", "optin")...),
	"enricher": slices.Concat(
		labelled("alumini_enricher_dead_letters_total", "reason", "decode_error", "unknown_client", "enrich_error"),
		labelled("alumini_enricher_dropped_total", "reason", "bot")),
	"sinker": slices.Concat(
		labelled("alumini_sinker_dead_letters_total", "reason", "decode_error", "invalid_event", "rejected_by_storage"),
		labelled("alumini_sinker_dropped_total", "reason", "erased", "copy")),
	"reporter": slices.Concat(
		crossed("alumini_reporter_requests_total", []string{"500", "503", "504"}, "aggregate", "timeseries",
			"breakdown", "realtime", "funnel", "retention", "export", "erasure", "operator_clients", "operator_keys", "operator_trends", "stats_v2"),
		labelled("alumini_reporter_rate_limited_total", "limit", "key", "auth_failures", "erasures")),
}

// dependencies are the dependencies whose outages each service counts
// (lib/outage), each exported from the start.
var dependencies = map[string][]string{
	"collector": {"kafka"},
	"enricher":  {"kafka"},
	"sinker":    {"kafka", "clickhouse"},
	"reporter":  {"clickhouse"},
}

func init() {
	for name, deps := range dependencies {
		knownLabels[name] = append(knownLabels[name], labelled("alumini_dependency_outages_total", "dependency", deps...)...)
	}
}

func labelled(name, label string, values ...string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = fmt.Sprintf("%s{%s=%q}", name, label, v)
	}
	return out
}

// crossed is a requests counter for every endpoint with each code.
func crossed(name string, codes []string, endpoints ...string) []string {
	var out []string
	for _, e := range endpoints {
		for _, c := range codes {
			out = append(out, fmt.Sprintf("%s{code=%q,endpoint=%q}", name, c, e))
		}
	}
	return out
}

// checkZeroAtStart scrapes each service of a stack that has had no traffic
// and finds every series of knownLabels at 0.
func checkZeroAtStart(t *testing.T, s *stack) {
	t.Helper()
	for _, name := range services {
		resp, err := http.Get("http://" + s.admin[name] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(body), "\n")
		for _, series := range knownLabels[name] {
			if !slices.Contains(lines, series+" 0") {
				t.Errorf("%s at start: no %s 0 in /metrics", name, series)
			}
		}
	}
}

// TestKnownLabelsCoverTheAlertsAndDashboard fails when an alert or a
// dashboard query reads a labelled counter that knownLabels does not list,
// so that a new one cannot be added without its zero series.
func TestKnownLabelsCoverTheAlertsAndDashboard(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dash := loadDashboard(t)
	text := string(rules)
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			text += "\n" + q.Expr
		}
	}
	listed := map[string]bool{}
	for _, series := range knownLabels {
		for _, s := range series {
			listed[s[:strings.Index(s, "{")]] = true
		}
	}
	// Counters without labels exist at zero as soon as they are registered.
	unlabelled := map[string]bool{
		"alumini_collector_events_accepted_total": true, "alumini_collector_produce_failures_total": true,
		"alumini_collector_produce_retries_total": true, "alumini_enricher_events_in_total": true,
		"alumini_enricher_events_out_total": true, "alumini_sinker_rows_inserted_total": true,
		"alumini_sinker_insert_retries_total": true,
	}
	for _, m := range regexp.MustCompile(`alumini_[a-z_]+_total\b`).FindAllString(text, -1) {
		if !listed[m] && !unlabelled[m] {
			t.Errorf("an alert or dashboard query reads %s, which knownLabels does not list (nor the unlabelled counters)", m)
		}
	}
}
