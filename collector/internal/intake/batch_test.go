package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestBatchReachesKafkaAsArrayNDJSONAndGzip(t *testing.T) {
	f := start(t)
	array := `[{"client_id":"shop","event_id":"a1","url":"https://shop.example/a"},
		{"write_key":"wk_shop","event_id":"a2","type":"custom","name":"signup","url":"https://shop.example/b"},
		{"client_id":"blog","event_id":"a3","url":"https://blog.example/"}]`
	ndjson := "{\"client_id\":\"shop\",\"event_id\":\"n1\",\"url\":\"https://shop.example/n\"}\n\n" +
		"{\"client_id\":\"shop\",\"event_id\":\"n2\",\"url\":\"https://shop.example/m\"}\n"
	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		ids     []string
	}{
		{"array", []byte(array), nil, []string{"a1", "a2", "a3"}},
		{"ndjson", []byte(ndjson), map[string]string{"Content-Type": "application/x-ndjson"}, []string{"n1", "n2"}},
		{"gzip", gzipped(t, []byte(`[{"client_id":"shop","event_id":"g1","url":"https://shop.example/g"}]`)), map[string]string{"Content-Encoding": "gzip"}, []string{"g1"}},
	} {
		r := send(t, "POST", f.url+"/api/batch", tc.body, tc.headers)
		if r.status != 202 {
			t.Fatalf("%s: POST /api/batch = %d %s; want 202", tc.name, r.status, r.body)
		}
		var resp struct {
			Accepted int      `json:"accepted"`
			EventIDs []string `json:"event_ids"`
		}
		if err := json.Unmarshal([]byte(r.body), &resp); err != nil || resp.Accepted != len(tc.ids) || strings.Join(resp.EventIDs, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("%s: response %s; want %d accepted with ids %v", tc.name, r.body, len(tc.ids), tc.ids)
		}
	}
	hits := byEventID(readHits(t, f, 6))
	for id, want := range map[string]string{"a1": "shop", "a2": "shop", "a3": "blog", "n1": "shop", "n2": "shop", "g1": "shop"} {
		if h := hits[id]; h == nil || h.ClientId != want {
			t.Errorf("hit %s = %v; want one of client %s", id, h, want)
		}
	}
	if h := hits["a2"]; h == nil || h.Type != aluminiv1.EventType_EVENT_TYPE_CUSTOM || h.Name != "signup" {
		t.Errorf("hit a2 = %v; want custom event signup", h)
	}
	if count, sum := histogram(t, f, "alumini_collector_batch_events"); count != 3 || sum != 6 {
		t.Errorf("batch size histogram: %d requests, %v events; want 3 requests of 6 events", count, sum)
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	f := start(t) // MaxBodyBytes 4096, MaxBatchEvents 10
	ev := func(i int) string { return fmt.Sprintf(`{"client_id":"shop","url":"https://shop.example/%d"}`, i) }
	var eleven []string
	for i := 0; i < 11; i++ {
		eleven = append(eleven, ev(i))
	}
	// A gzip bomb: 1 MB of spaces inside a JSON array, a few KB compressed.
	bomb := gzipped(t, []byte("["+ev(0)+strings.Repeat(" ", 1<<20)+"]"))
	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		status  int
		message string
	}{
		{"bad event names its index", []byte(`[` + ev(0) + `,{"client_id":"shop"}]`), nil, 400, `{"error":"event 1: url is required for a pageview"}`},
		{"unknown client names its index", []byte(`[` + ev(0) + `,` + ev(1) + `,{"client_id":"nobody","url":"https://a.example/"}]`), nil, 400, `{"error":"event 2: unknown client_id \"nobody\""}`},
		{"malformed event names its index", []byte("{\"client_id\":\"shop\",\"url\":\"https://a.example/\"}\n{\"client_id\":"), nil, 400, `event 1: malformed JSON`},
		{"too many events", []byte("[" + strings.Join(eleven, ",") + "]"), nil, 400, `{"error":"batch holds more than 10 events; the limit is 10"}`},
		{"empty", []byte(`[]`), nil, 400, `{"error":"empty batch: send a JSON array or newline-delimited JSON objects"}`},
		{"gzip bomb", bomb, map[string]string{"Content-Encoding": "gzip"}, 413, `{"error":"decompressed request body is larger than 4096 bytes"}`},
		{"not gzip", []byte("plain"), map[string]string{"Content-Encoding": "gzip"}, 400, `malformed gzip body`},
		{"unknown encoding", []byte("[]"), map[string]string{"Content-Encoding": "br"}, 415, `{"error":"Content-Encoding \"br\" is not supported; send gzip, deflate or none"}`},
		{"compressed body too large", bytes.Repeat([]byte("x"), 5000), nil, 413, `{"error":"request body is larger than the collector accepts"}`},
		{"wrong content type", []byte(`[]`), map[string]string{"Content-Type": "multipart/form-data"}, 415, `{"error":"Content-Type must be application/json (or text/plain, as navigator.sendBeacon sends)"}`},
	} {
		r := send(t, "POST", f.url+"/api/batch", tc.body, tc.headers)
		if r.status != tc.status || !strings.Contains(r.body, tc.message) {
			t.Errorf("%s: POST /api/batch = %d %s; want %d with %s", tc.name, r.status, r.body, tc.status, tc.message)
		}
	}
	if len(bomb) > 8192 {
		t.Fatalf("the gzip bomb is %d bytes compressed; want it under the body limit", len(bomb))
	}
	assertEmpty(t, f)
	if got := testutil.ToFloat64(f.handler.dropped.WithLabelValues("too_large")); got != 2 {
		t.Errorf("dropped{reason=too_large} = %v; want 2", got)
	}
	if got := f.handler.inflight.Load(); got != 0 {
		t.Errorf("in-flight bytes after all requests = %d; want 0 (a release was missed)", got)
	}
}
