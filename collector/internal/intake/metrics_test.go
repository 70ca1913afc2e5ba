package intake

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRequestMetrics checks the series a dashboard of the collector reads:
// requests by endpoint and status, their duration by endpoint, accepted
// events, and Kafka's acknowledgement time and batch sizes.
func TestRequestMetrics(t *testing.T) {
	f := start(t)
	for range 2 {
		if r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/"}`), nil); r.status != 202 {
			t.Fatalf("event = %d %s", r.status, r.body)
		}
	}
	if r := send(t, "POST", f.url+"/api/batch", []byte(`[{"client_id":"blog","url":"https://blog.example/a"},{"client_id":"blog","url":"https://blog.example/b"}]`), nil); r.status != 202 {
		t.Fatalf("batch = %d %s", r.status, r.body)
	}
	if r := send(t, "GET", f.url+"/nowhere", nil, nil); r.status != 404 {
		t.Fatalf("unknown path = %d %s", r.status, r.body)
	}
	readHits(t, f, 4)
	// Every endpoint's server-error series are there from the start, at 0.
	var zeros []string
	for _, e := range endpointLabels {
		for _, code := range []string{"500", "503"} {
			zeros = append(zeros, fmt.Sprintf("alumini_collector_requests_total{code=%q,endpoint=%q} 0", code, e))
		}
	}
	want := `
# HELP alumini_collector_events_accepted_total Events acknowledged by Kafka and answered with 2xx.
# TYPE alumini_collector_events_accepted_total counter
alumini_collector_events_accepted_total 4
# HELP alumini_collector_requests_total HTTP requests by endpoint and status code.
# TYPE alumini_collector_requests_total counter
alumini_collector_requests_total{code="202",endpoint="batch"} 1
alumini_collector_requests_total{code="202",endpoint="event"} 2
alumini_collector_requests_total{code="404",endpoint="other"} 1
` + strings.Join(zeros, "\n") + "\n"
	if err := testutil.GatherAndCompare(f.metrics, strings.NewReader(want), "alumini_collector_requests_total", "alumini_collector_events_accepted_total"); err != nil {
		t.Error(err)
	}
	// Histograms: the number of observations is what can be asserted.
	for name, count := range map[string]uint64{
		`alumini_collector_request_duration_seconds{endpoint="event"}`: 2,
		`alumini_collector_request_duration_seconds{endpoint="batch"}`: 1,
		`alumini_collector_request_duration_seconds{endpoint="other"}`: 1,
		`alumini_collector_produce_duration_seconds`:                   3,
		`alumini_collector_batch_events`:                               3,
	} {
		if got := histogramCount(t, f, name); got != count {
			t.Errorf("%s observations = %d; want %d", name, got, count)
		}
	}
}

// histogramCount is the sample count of one histogram series, named as
// metric{label="value"}.
func histogramCount(t *testing.T, f fixture, series string) uint64 {
	t.Helper()
	name, label, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	families, err := f.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			if strings.Join(labels, ",") == label {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// TestWrongContentTypeCountsAsInvalid: docs/collector.md's table of
// refusals names the drop reason each one is counted under.
func TestWrongContentTypeCountsAsInvalid(t *testing.T) {
	f := start(t)
	if status, body := post(t, f.url+"/api/event", "application/x-www-form-urlencoded", `client_id=shop`, nil); status != 415 {
		t.Fatalf("POST with a form Content-Type = %d %s; want 415", status, body)
	}
	if got := testutil.ToFloat64(f.handler.dropped.WithLabelValues("invalid")); got != 1 {
		t.Errorf(`dropped{reason="invalid"} after one wrong Content-Type = %v; want 1`, got)
	}
}
