package intake

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawExchange writes req as it is on a new connection and reads one
// answer: for requests no well-behaved client library would send.
func rawExchange(t *testing.T, f fixture, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func dropped(f fixture, reason string) float64 {
	return testutil.ToFloat64(f.handler.dropped.WithLabelValues(reason))
}

// TestLargeHeads: first-party hits carry the site's cookies; heads up to
// 16 KiB are read, larger ones get 431 saying why, counted.
func TestLargeHeads(t *testing.T) {
	f := start(t)
	ev := []byte(`{"client_id":"blog","event_id":"cookies","url":"https://blog.example/"}`)
	// Three cookies of 4,000 bytes, as a site with a consent manager, A/B
	// tests and a session store sends: a 12 KB head.
	var cookies []string
	for i := range 3 {
		cookies = append(cookies, fmt.Sprintf("c%d=%s", i, strings.Repeat("v", 4000)))
	}
	if r := send(t, "POST", f.url+"/api/event", ev, map[string]string{"Cookie": strings.Join(cookies, "; ")}); r.status != 202 {
		t.Fatalf("event with 12 KB of cookies = %d %s; want 202", r.status, r.body)
	}
	if got := readHits(t, f, 1)[0].EventId; got != "cookies" {
		t.Errorf("stored %q; want the event with the large cookies", got)
	}

	huge := "POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: big=" + strings.Repeat("v", 17<<10) +
		"\r\nContent-Length: " + fmt.Sprint(len(ev)) + "\r\n\r\n" + string(ev)
	resp, body := rawExchange(t, f, huge)
	want := `{"error":"request line and headers are larger than the 16384 bytes the collector reads; send fewer or smaller cookies"}`
	if resp.StatusCode != 431 || body != want {
		t.Errorf("17 KiB head = %d %s; want 431 %s", resp.StatusCode, body, want)
	}
	if n := dropped(f, "header_too_large"); n != 1 {
		t.Errorf("dropped{reason=header_too_large} = %v; want 1", n)
	}
	if n := testutil.ToFloat64(f.handler.requests.WithLabelValues("unreadable", "431")); n != 1 {
		t.Errorf(`requests_total{endpoint="unreadable",code="431"} = %v; want 1`, n)
	}
	assertStoredCount(t, f, 1)
}

func assertStoredCount(t *testing.T, f fixture, want int) {
	t.Helper()
	readHits(t, f, want)
}

// TestConflictingFraming: a request with Content-Length and
// Transfer-Encoding is read differently by different servers (request
// smuggling); it is refused, counted and nothing of it is stored.
func TestConflictingFraming(t *testing.T) {
	f := start(t)
	ev := `{"client_id":"blog","url":"https://blog.example/"}`
	req := "POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(ev), ev)
	resp, body := rawExchange(t, f, req)
	if resp.StatusCode != 400 || body != `{"error":"request has both Content-Length and Transfer-Encoding"}` || !resp.Close {
		t.Errorf("Content-Length with Transfer-Encoding = %d %s (close %v); want 400 naming both, and the connection closed", resp.StatusCode, body, resp.Close)
	}
	if n := dropped(f, "malformed_request"); n != 1 {
		t.Errorf("dropped{reason=malformed_request} = %v; want 1", n)
	}
	// The same body chunked alone is fine.
	req = "POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(ev), ev)
	if resp, body := rawExchange(t, f, req); resp.StatusCode != 202 {
		t.Errorf("chunked body = %d %s; want 202", resp.StatusCode, body)
	}
	assertStoredCount(t, f, 1)
}

// TestBodiesAreAdmittedBeforeTheyAreRead sends only the head and the first
// 8 KiB (what fasthttp reads before the handler) of requests whose bodies
// would pass a limit: the answer must come without the rest, so the
// collector never held it.
func TestBodiesAreAdmittedBeforeTheyAreRead(t *testing.T) {
	f := start(t, func(c *Config) { c.MaxBodyBytes, c.MaxInflightBytes = 64<<10, 100_000 })
	head := func(n int) string {
		return fmt.Sprintf("POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
	}
	prefix := strings.Repeat(" ", 8<<10)
	// 2 x 60,000 bytes (as read and as decoded) is over the budget.
	resp, body := rawExchange(t, f, head(60_000)+prefix)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "busy") {
		t.Errorf("body over the in-flight budget = %d %s (Retry-After %q); want 503 with Retry-After: 1 before the body is sent",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := dropped(f, "overloaded"); n != 1 {
		t.Errorf("dropped{reason=overloaded} = %v; want 1", n)
	}
	// Over the body limit: 413 without reading it.
	resp, body = rawExchange(t, f, head(1<<30)+prefix)
	if resp.StatusCode != 413 || body != `{"error":"request body is larger than the collector accepts"}` {
		t.Errorf("1 GiB Content-Length = %d %s; want 413 before the body is sent", resp.StatusCode, body)
	}
	// A chunked body has no length to check first: it is read up to the
	// limit and refused there.
	f = start(t, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	chunk := strings.Repeat("x", 40_000)
	resp, body = rawExchange(t, f, "POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk))
	if resp.StatusCode != 413 {
		t.Errorf("80,000-byte chunked body = %d %s; want 413", resp.StatusCode, body)
	}
	if n := dropped(f, "too_large"); n != 1 {
		t.Errorf("dropped{reason=too_large} = %v; want 1", n)
	}
	// A body that fits is read and stored; nothing stays reserved.
	ev := `{"client_id":"blog","url":"https://blog.example/"}`
	if resp, body := rawExchange(t, f, head(len(ev))+ev); resp.StatusCode != 202 {
		t.Errorf("small event = %d %s; want 202", resp.StatusCode, body)
	}
	assertStoredCount(t, f, 1)
	if got := f.handler.inflight.Load(); got != 0 {
		t.Errorf("in-flight bytes at rest = %d; want 0", got)
	}
	// A body that ends before its Content-Length is counted as malformed.
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, head(100)+`{"client_id"`); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.Close()
	if resp.StatusCode != 400 || dropped(f, "malformed_request") != 1 {
		t.Errorf("truncated body = %d, dropped{reason=malformed_request} %v; want 400 and 1", resp.StatusCode, dropped(f, "malformed_request"))
	}
}
