package intake

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

type response struct {
	status int
	header http.Header
	body   string
}

// noRedirect keeps cookies and statuses visible to the test.
var testClient = &http.Client{Timeout: 10 * time.Second}

// send makes one request; headers may set Content-Type (default
// application/json for bodies) and anything else.
func send(t *testing.T, method, url string, body []byte, headers map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readHits reads want raw hits from the fixture's topic and fails unless
// exactly that many are there.
func readHits(t *testing.T, f fixture, want int) []*aluminiv1.RawHit {
	t.Helper()
	msgs := kafkatest.ReadAll(t, f.kafka, f.topic, want, 5*time.Second)
	if len(msgs) != want {
		t.Fatalf("raw topic holds %d records; want %d", len(msgs), want)
	}
	if n := kafkatest.Count(t, f.kafka, f.topic); n != int64(want) {
		t.Fatalf("raw topic holds %d records in all; want %d", n, want)
	}
	out := make([]*aluminiv1.RawHit, len(msgs))
	for i, m := range msgs {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(m.Value, &hit); err != nil {
			t.Fatal(err)
		}
		out[i] = &hit
	}
	return out
}

func byEventID(hits []*aluminiv1.RawHit) map[string]*aluminiv1.RawHit {
	m := make(map[string]*aluminiv1.RawHit, len(hits))
	for _, h := range hits {
		m[h.EventId] = h
	}
	return m
}

func assertEmpty(t *testing.T, f fixture) {
	t.Helper()
	if n := kafkatest.Count(t, f.kafka, f.topic); n != 0 {
		t.Errorf("raw topic holds %d records; want none", n)
	}
}

// histogram returns the sample count and sum of a histogram without labels.
func histogram(t *testing.T, f fixture, name string) (uint64, float64) {
	t.Helper()
	mfs, err := f.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0, 0
}
