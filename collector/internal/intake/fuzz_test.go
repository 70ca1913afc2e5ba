package intake

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// The fuzz targets send what outside senders control (bodies of every
// endpoint, the pixel's query string) through the whole handler, as the
// server calls it, to a publisher that records what would go to Kafka.
// Whatever the input: no panic, only the statuses the docs list, and
// every hit produced is a valid RawHit (protobuf checks its strings are
// UTF-8) within the field limits, without NUL characters. Seeds are in
// testdata/fuzz/<target>; `make fuzz` runs each target.

// recorder is a Publisher that keeps copies of what it is handed.
type recorder struct{ msgs []kafka.Message }

func (r *recorder) Admit() error { return nil }

func (r *recorder) Publish(_ context.Context, msgs ...kafka.Message) error {
	for _, m := range msgs {
		// The handler reuses its buffers once Publish returned.
		r.msgs = append(r.msgs, kafka.Message{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value)})
	}
	return nil
}

// fuzzHandler is one handler for all of a process's fuzz inputs (a fuzz
// worker runs them one at a time): making one per input took most of the
// time (its rate-limit tables), and a shared one also carries state
// across inputs as a running collector does.
var fuzzHandler = sync.OnceValues(func() (*Handler, error) {
	dir, err := os.MkdirTemp("", "alumini-fuzz-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(path, clientsYAML(), 0o600); err != nil {
		return nil, err
	}
	clients, err := registry.OpenFile(path)
	if err != nil {
		return nil, err
	}
	h := New(Config{Clients: clients, Publisher: &recorder{}, Log: zap.NewNop(), MaxBodyBytes: 64 << 10, MaxBatchEvents: 50})
	return h, os.RemoveAll(dir) // read once: the file is not needed any more
})

// fuzzServe serves one request and returns the answer and what reached
// the publisher.
func fuzzServe(t *testing.T, req *fasthttp.Request) (*fasthttp.Response, []kafka.Message) {
	t.Helper()
	h, err := fuzzHandler()
	if err != nil {
		t.Fatal(err)
	}
	rec := h.cfg.Publisher.(*recorder)
	rec.msgs = rec.msgs[:0]
	var ctx fasthttp.RequestCtx
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}, nil)
	h.Serve(&ctx)
	if got := h.inflight.Load(); got != 0 {
		t.Fatalf("in-flight bytes after the request = %d; want 0", got)
	}
	return &ctx.Response, rec.msgs
}

// fuzzPost builds a POST of body to path with the headers t.js and SDKs send.
func fuzzPost(path string, body []byte, headers ...string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBody(body)
	return req
}

// allowedStatus are the answers docs/collector.md lists for intake
// endpoints.
var allowedStatus = map[int]bool{200: true, 202: true, 204: true, 400: true, 401: true, 403: true, 413: true, 415: true, 429: true, 503: true}

// checkAnswer fails unless status is a documented one, refusals produce
// nothing and a refusal's body is the JSON error.
func checkAnswer(t *testing.T, resp *fasthttp.Response, msgs []kafka.Message) {
	t.Helper()
	status := resp.StatusCode()
	if !allowedStatus[status] {
		t.Fatalf("status %d (%s); want one the docs list", status, resp.Body())
	}
	if status >= 400 {
		if len(msgs) > 0 {
			t.Fatalf("status %d, yet %d events produced", status, len(msgs))
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(resp.Body(), &e); err != nil || e.Error == "" {
			t.Fatalf("refusal body %q: want {\"error\": ...} (%v)", resp.Body(), err)
		}
	}
}

// checkHits fails unless every produced message is a RawHit the enricher
// can take: UTF-8 (proto.Unmarshal checks), no NUL, within the limits.
func checkHits(t *testing.T, msgs []kafka.Message) []*aluminiv1.RawHit {
	t.Helper()
	hits := make([]*aluminiv1.RawHit, len(msgs))
	for i, m := range msgs {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(m.Value, &hit); err != nil {
			t.Fatalf("produced message %d does not decode: %v", i, err)
		}
		if !bytes.HasPrefix(m.Key, []byte(hit.ClientId+":")) || hit.ClientId == "" {
			t.Fatalf("key %q does not start with the client %q", m.Key, hit.ClientId)
		}
		if hit.EventId == "" {
			t.Fatalf("hit %v has no event id", &hit)
		}
		for _, f := range []struct {
			name, v string
			max     int
		}{
			{"event_id", hit.EventId, maxEventIDLen}, {"name", hit.Name, maxNameLen}, {"url", hit.Url, maxURLLen},
			{"referrer", hit.Referrer, maxURLLen}, {"title", hit.Title, maxTitleLen}, {"language", hit.Language, maxShortFieldLen},
			{"timezone", hit.Timezone, maxShortFieldLen}, {"user_id", hit.UserId, maxShortFieldLen}, {"user_agent", hit.UserAgent, maxURLLen},
			{"cookie_id", hit.CookieId, maxShortFieldLen},
		} {
			if len(f.v) > f.max || strings.IndexByte(f.v, 0) >= 0 || !utf8.ValidString(f.v) {
				t.Fatalf("%s %q: want valid UTF-8 of at most %d bytes without NUL", f.name, f.v, f.max)
			}
		}
		if hit.Url != "" {
			if u, err := url.Parse(hit.Url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("url %q: want an absolute http(s) URL (%v)", hit.Url, err)
			}
		}
		if len(hit.Properties) > maxProperties {
			t.Fatalf("%d properties; the limit is %d", len(hit.Properties), maxProperties)
		}
		for k, v := range hit.Properties {
			if k == "" || len(k) > maxPropertyKeyLen || len(v) > maxPropertyValLen || strings.IndexByte(k+v, 0) >= 0 {
				t.Fatalf("property %q=%q: want a name of 1-%d bytes, a value of at most %d, no NUL", k, v, maxPropertyKeyLen, maxPropertyValLen)
			}
		}
		hits[i] = &hit
	}
	return hits
}

func FuzzNativeEvent(f *testing.F) {
	f.Add([]byte(`{"client_id":"blog","url":"https://blog.example/pricing?utm_source=news","referrer":"https://www.google.com/","title":"Pricing","properties":{"plan":"pro","seats":3,"trial":true}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, msgs := fuzzServe(t, fuzzPost("/api/event", body))
		checkAnswer(t, resp, msgs)
		hits := checkHits(t, msgs)
		switch resp.StatusCode() {
		case 202:
			if len(hits) != 1 {
				t.Fatalf("202 with %d events produced; want 1", len(hits))
			}
		case 204:
			if len(hits) != 0 {
				t.Fatalf("204 (dropped) with %d events produced", len(hits))
			}
			return
		default:
			return
		}
		// What was stored is what encoding/json reads from the same text
		// (with NUL characters removed), where it reads it at all: the fast
		// decoder must not read an event differently.
		var ev map[string]any
		dec := json.NewDecoder(bytes.NewReader(cleanJSONText(bytes.Clone(body))))
		dec.UseNumber()
		if dec.Decode(&ev) != nil || dec.More() {
			return
		}
		hit := hits[0]
		for field, got := range map[string]string{"url": hit.Url, "referrer": hit.Referrer, "title": hit.Title, "name": hit.Name, "user_id": hit.UserId} {
			want, _ := ev[field].(string)
			if got != want {
				t.Fatalf("%s stored as %q; encoding/json reads %q", field, got, want)
			}
		}
		props, _ := ev["properties"].(map[string]any)
		for k, v := range props {
			var want string
			switch v := v.(type) {
			case string:
				want = v
			case json.Number:
				want = v.String()
			case bool:
				want = map[bool]string{true: "true", false: "false"}[v]
			case nil:
				continue
			}
			if got, ok := hit.Properties[k]; !ok || got != want {
				t.Fatalf("property %q stored as %q (%v); encoding/json reads %q", k, got, ok, want)
			}
		}
	})
}

func FuzzNativeBatch(f *testing.F) {
	f.Add([]byte(`[{"client_id":"blog","event_id":"e1","url":"https://blog.example/"},{"client_id":"blog","event_id":"e2","type":"custom","name":"Signup"}]`))
	f.Add([]byte("{\"client_id\":\"blog\",\"url\":\"https://blog.example/\"}\n\n{\"write_key\":\"wk_shop\",\"url\":\"https://shop.example/\"}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, msgs := fuzzServe(t, fuzzPost("/api/batch", body))
		checkAnswer(t, resp, msgs)
		hits := checkHits(t, msgs)
		if resp.StatusCode() != 202 {
			if resp.StatusCode() == 204 && len(hits) > 0 {
				t.Fatalf("204 (all dropped) with %d events produced", len(hits))
			}
			return
		}
		// The answer accounts for every event: produced ones by their ids.
		var ans struct {
			Accepted, Dropped int
			EventIDs          []string `json:"event_ids"`
		}
		if err := json.Unmarshal(resp.Body(), &ans); err != nil {
			t.Fatalf("answer %q: %v", resp.Body(), err)
		}
		if ans.Accepted != len(hits) || ans.Accepted+ans.Dropped != len(ans.EventIDs) || len(ans.EventIDs) > 50 {
			t.Fatalf("answer %s for %d produced events; want accepted = produced, accepted + dropped = ids, at most 50", resp.Body(), len(hits))
		}
		listed := map[string]bool{}
		for _, id := range ans.EventIDs {
			listed[id] = true
		}
		for _, hit := range hits {
			if !listed[hit.EventId] {
				t.Fatalf("produced event %q is not in the answer %s", hit.EventId, resp.Body())
			}
		}
	})
}

func FuzzSegment(f *testing.F) {
	f.Add("/v1/track", []byte(`{"userId":"019mr8mf4r","event":"Item Purchased","properties":{"name":"Mat","revenue":14.99},"context":{"ip":"24.5.68.47"},"timestamp":"2030-01-01T00:00:00.000Z"}`))
	f.Add("/v1/batch", []byte(`{"batch":[{"type":"page","anonymousId":"a1","name":"Home","properties":{"url":"https://shop.example/"}},{"type":"identify","userId":"u1","traits":{"email":"x@example.com"}}],"sentAt":"2030-01-01T00:00:00Z"}`))
	paths := []string{"/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/batch"}
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		// The path only picks one of the endpoints.
		p := paths[0]
		for _, c := range paths {
			if strings.HasPrefix(path, c) {
				p = c
			}
		}
		resp, msgs := fuzzServe(t, fuzzPost(p, body, "Authorization", "Basic d2tfc2hvcDo=")) // wk_shop:
		checkAnswer(t, resp, msgs)
		hits := checkHits(t, msgs)
		if resp.StatusCode() == 200 && p != "/v1/batch" && len(hits) > 1 {
			t.Fatalf("one Segment call produced %d events", len(hits))
		}
		for _, hit := range hits {
			if hit.ClientId != "shop" {
				t.Fatalf("event of client %q; the write key is shop's", hit.ClientId)
			}
			if ip := net.IP(hit.Ip); !ip.Equal(net.IPv4(198, 51, 100, 7)) {
				t.Fatalf("event with IP %s from a public write key; only server keys may set it", ip)
			}
		}
	})
}

func FuzzPixelQuery(f *testing.F) {
	f.Add("write_key=wk_shop&url=https%3A%2F%2Fshop.example%2F&title=Newsletter&prop.campaign=winter")
	f.Add("client_id=blog&type=custom&name=Open&screen_width=1280&screen_height=800&dnt=1")
	f.Fuzz(func(t *testing.T, query string) {
		// Read from the wire as the server reads it: a request line
		// fasthttp cannot parse never reaches the handler.
		var req fasthttp.Request
		raw := "GET /p.gif?" + query + " HTTP/1.1\r\nHost: x\r\nReferer: https://blog.example/from-the-referer\r\n\r\n"
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil || string(req.URI().Path()) != "/p.gif" {
			return
		}
		resp, msgs := fuzzServe(t, &req)
		checkAnswer(t, resp, msgs)
		hits := checkHits(t, msgs)
		switch resp.StatusCode() {
		case 200:
			if len(hits) > 1 || !bytes.Equal(resp.Body(), transparentGIF) {
				t.Fatalf("200 with %d events and body %q; want at most one event and the GIF", len(hits), resp.Body())
			}
		case 400, 403, 429:
		default:
			t.Fatalf("pixel answered %d", resp.StatusCode())
		}
	})
}
