package intake

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

func deflated(t *testing.T, b []byte, wrapped bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	var zw interface {
		Write([]byte) (int, error)
		Close() error
	}
	if wrapped {
		zw = zlib.NewWriter(&buf)
	} else {
		zw, err = flate.NewWriter(&buf, flate.BestCompression)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSegmentBodiesAsSDKsSendThem: the labels, encodings and places of the
// write key that real Segment-spec SDKs use are all taken, each stored once.
func TestSegmentBodiesAsSDKsSendThem(t *testing.T) {
	f := start(t)
	msg := func(id string) []byte {
		return []byte(`{"batch":[{"type":"track","event":"Signup","userId":"u1","messageId":"` + id + `"}],"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`)
	}
	for _, tc := range []struct {
		name, path, id string
		body           []byte
		headers        map[string]string
	}{
		// @rudderstack/rudder-sdk-node: gzip JSON that axios labels as a form.
		{"rudderstack node", "/v1/batch", "rs1", gzipped(t, msg("rs1")),
			merge(basic("wk_shop"), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})},
		{"zlib deflate", "/v1/batch", "df1", deflated(t, msg("df1"), true), merge(basic("wk_shop"), map[string]string{"Content-Encoding": "deflate"})},
		{"raw deflate", "/v1/batch", "df2", deflated(t, msg("df2"), false), merge(basic("wk_shop"), map[string]string{"Content-Encoding": "deflate"})},
		{"no Content-Type", "/v1/batch", "ct1", msg("ct1"), merge(basic("wk_shop"), map[string]string{"Content-Type": ""})},
		{"write key header", "/v1/batch", "hd1", msg("hd1"), map[string]string{writeKeyHeader: "wk_shop"}},
		// analytics.js: text/plain to the short path, write key in the body.
		{"analytics.js", "/v1/t", "aj1", []byte(`{"type":"track","event":"Signup","anonymousId":"a1","messageId":"aj1","writeKey":"wk_shop"}`),
			map[string]string{"Content-Type": "text/plain"}},
		{"analytics.js batching", "/v1/b", "aj2", []byte(`{"writeKey":"wk_shop","batch":[{"type":"page","anonymousId":"a1","messageId":"aj2","properties":{"url":"https://shop.example/"}}]}`),
			map[string]string{"Content-Type": "text/plain"}},
	} {
		r := send(t, "POST", f.url+tc.path, tc.body, tc.headers)
		if r.status != 200 || r.body != `{"success":true}` {
			t.Errorf("%s: POST %s = %d %s; want 200 {\"success\":true}", tc.name, tc.path, r.status, r.body)
		}
	}
	hits := byEventID(readHits(t, f, 7))
	for _, id := range []string{"rs1", "df1", "df2", "ct1", "hd1", "aj1", "aj2"} {
		if h := hits[id]; h == nil || h.ClientId != "shop" {
			t.Errorf("hit %s = %v; want it stored for shop", id, h)
		}
	}
	// Group and alias calls are answered as success, counted, not stored.
	before := testutil.ToFloat64(f.handler.dropped.WithLabelValues("unsupported_type"))
	for _, path := range []string{"/v1/group", "/v1/g", "/v1/alias", "/v1/a"} {
		if r := send(t, "POST", f.url+path, []byte(`{"userId":"u1","groupId":"g1","writeKey":"wk_shop"}`), nil); r.status != 200 {
			t.Errorf("POST %s = %d %s; want 200", path, r.status, r.body)
		}
	}
	if got := testutil.ToFloat64(f.handler.dropped.WithLabelValues("unsupported_type")) - before; got != 4 {
		t.Errorf("unsupported_type drops after four group/alias calls = %v; want 4", got)
	}
	if n := int(testutilCount(t, f)); n != 7 {
		t.Errorf("raw topic holds %d records after group and alias; want still 7", n)
	}
}

func testutilCount(t *testing.T, f fixture) int64 {
	t.Helper()
	return kafkatest.Count(t, f.kafka, f.topic)
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestSegmentDeflateBombAndLargeBatch: a deflate body is bounded like a
// gzip one (413 at the body limit, never more inflated), and a Segment
// batch as large as the SDKs make (by bytes, past -max-batch-events) is
// taken.
func TestSegmentDeflateBombAndLargeBatch(t *testing.T) {
	f := start(t, func(c *Config) { c.MaxBodyBytes = 1 << 20 })
	bomb := deflated(t, []byte(`{"batch":[`+strings.Repeat(" ", 2<<20)+`]}`), true)
	r := send(t, "POST", f.url+"/v1/batch", bomb, merge(basic("wk_shop"), map[string]string{"Content-Encoding": "deflate"}))
	if r.status != 413 || !strings.Contains(r.body, "decompressed request body is larger than 1048576 bytes") {
		t.Errorf("deflate bomb = %d %s; want 413", r.status, r.body)
	}
	// 1,500 messages of ~300 bytes: what analytics-node puts in 480 KB.
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range 1500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Signup","userId":"u%d","messageId":"m%04d","properties":{},"context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}},"integrations":{}}`, i, i)
	}
	b.WriteString(`]}`)
	if r := send(t, "POST", f.url+"/v1/batch", []byte(b.String()), basic("wk_shop")); r.status != 200 {
		t.Fatalf("batch of 1500 messages (%d bytes) = %d %s; want 200", b.Len(), r.status, r.body)
	}
	readHits(t, f, 1500)
	tooMany := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u","event":"E"},`, segmentBatchMessages) + `{"type":"track","userId":"u","event":"E"}]}`
	r = send(t, "POST", f.url+"/v1/batch", []byte(tooMany), basic("wk_shop"))
	if want := fmt.Sprintf("batch holds %d messages; the limit is %d", segmentBatchMessages+1, segmentBatchMessages); r.status != 400 || !strings.Contains(r.body, want) {
		t.Errorf("batch of %d messages = %d %s; want 400 %s", segmentBatchMessages+1, r.status, r.body, want)
	}
}

// TestRefusalsAreLogged: a refused request is logged with its reason and
// client, a few a second per reason, and counted under a documented reason.
func TestRefusalsAreLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	// A stopped clock: every refusal falls in the sampler's same second.
	f := start(t, func(c *Config) { c.Log = zap.New(core, zap.WithClock(stoppedClock{time.Now()})) })
	for range 20 {
		if r := send(t, "POST", f.url+"/v1/track", []byte(`{"userId":"u1"}`), basic("wk_shop")); r.status != 400 {
			t.Fatalf("track without event = %d %s; want 400", r.status, r.body)
		}
	}
	if r := send(t, "POST", f.url+"/api/event", []byte(`client_id=shop`), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); r.status != 415 {
		t.Fatalf("form body to the native API = %d %s; want 415", r.status, r.body)
	}
	invalid := logs.FilterMessage("request refused: invalid").All()
	if len(invalid) != refusalsPerSecond {
		t.Fatalf("%d refusals logged of 21 in one second; want %d (sampled)", len(invalid), refusalsPerSecond)
	}
	fields := invalid[0].ContextMap()
	if fields["client"] != "shop" || fields["reason"] != "invalid" || fields["error"] != "event is required for a track call" || fields["endpoint"] != "segment_track" {
		t.Errorf("first refusal logged with %v; want client shop, reason invalid, the error and the endpoint", fields)
	}
	if got := testutil.ToFloat64(f.handler.dropped.WithLabelValues("invalid")); got != 21 {
		t.Errorf(`dropped{reason="invalid"} = %v; want 21, every refusal counted`, got)
	}
}

// TestSegmentOriginalTimestampAndLargeBatchWithinBurst: RudderStack's
// originalTimestamp is corrected by sentAt as timestamp is, and a batch
// larger than the client's burst passes on a full bucket instead of
// meeting 429 forever.
func TestSegmentOriginalTimestampAndLargeBatchWithinBurst(t *testing.T) {
	f := start(t, func(c *Config) { c.MaxBodyBytes, c.ClientRate, c.ClientBurst = 1<<20, 1, 1 })
	// The sender's clock is an hour behind: its event happened a second
	// before it sent the batch.
	sent := time.Now().Add(-time.Hour)
	body := `{"batch":[{"type":"track","event":"E","userId":"u","messageId":"ot1","originalTimestamp":"` + sent.Add(-time.Second).UTC().Format(time.RFC3339Nano) + `"}`
	for i := range 20 {
		body += fmt.Sprintf(`,{"type":"track","event":"E","userId":"u","messageId":"b%d"}`, i)
	}
	body += `],"sentAt":"` + sent.UTC().Format(time.RFC3339Nano) + `"}`
	if r := send(t, "POST", f.url+"/v1/batch", []byte(body), basic("wk_shop")); r.status != 200 {
		t.Fatalf("batch of 21 over a burst of 10 = %d %s; want 200", r.status, r.body)
	}
	h := byEventID(readHits(t, f, 21))["ot1"]
	if skew := time.Since(time.UnixMilli(h.SentAtMs)); skew < 500*time.Millisecond || skew > 5*time.Second {
		t.Errorf("originalTimestamp an hour behind, corrected by sentAt = %v ago; want about 1s", skew)
	}
	if r := send(t, "POST", f.url+"/v1/batch", []byte(body), basic("wk_shop")); r.status != 429 {
		t.Errorf("second batch on an empty bucket = %d %s; want 429", r.status, r.body)
	}
}

// stoppedClock is a zap clock that always says the same time.
type stoppedClock struct{ t time.Time }

func (c stoppedClock) Now() time.Time                         { return c.t }
func (c stoppedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// TestSegmentPreflightAllowsSDKHeaders: analytics.js sends Authorization,
// and X-Retry-Count on a retry; a preflight that refused either would
// lose the request in the browser.
func TestSegmentPreflightAllowsSDKHeaders(t *testing.T) {
	f := start(t)
	r := send(t, "OPTIONS", f.url+"/v1/t", nil, map[string]string{"Origin": "https://shop.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-retry-count"})
	allowed := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"authorization", "content-type", "x-retry-count", "x-write-key"} {
		if r.status != 204 || !strings.Contains(allowed, h) {
			t.Errorf("preflight of /v1/t = %d, Access-Control-Allow-Headers %q; want 204 allowing %s", r.status, allowed, h)
		}
	}
}

// TestSegmentMalformedBasic: a malformed Basic header says so.
func TestSegmentMalformedBasic(t *testing.T) {
	f := start(t)
	r := send(t, "POST", f.url+"/v1/track", []byte(`{"userId":"u1","event":"E"}`), map[string]string{"Authorization": "Basic !!"})
	if want := `{"error":"Authorization: malformed Basic credentials"}`; r.status != 401 || r.body != want {
		t.Errorf("malformed Basic header = %d %s; want 401 %s", r.status, r.body, want)
	}
}
