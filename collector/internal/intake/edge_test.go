package intake

import (
	"bytes"
	"image/gif"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aluminiapp/pipeline/collector/internal/clientip"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestPixel(t *testing.T) {
	f := start(t)
	q := url.Values{"client_id": {"shop"}, "event_id": {"px1"}, "title": {"Welcome"}, "prop.campaign": {"winter"}}
	r := send(t, "GET", f.url+"/p.gif?"+q.Encode(), nil, map[string]string{"Referer": "https://shop.example/newsletter"})
	if r.status != 200 || r.header.Get("Content-Type") != "image/gif" {
		t.Fatalf("GET /p.gif = %d %s; want 200 image/gif", r.status, r.header.Get("Content-Type"))
	}
	img, err := gif.Decode(strings.NewReader(r.body))
	if err != nil || img.Bounds().Dx() != 1 || img.Bounds().Dy() != 1 {
		t.Errorf("pixel body: %v, %v; want a 1x1 GIF", img, err)
	}
	for k, want := range map[string]string{"Cache-Control": "no-cache, no-store, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	h := readHits(t, f, 1)[0]
	if h.EventId != "px1" || h.Url != "https://shop.example/newsletter" || h.Title != "Welcome" || h.Properties["campaign"] != "winter" || h.Type != aluminiv1.EventType_EVENT_TYPE_PAGEVIEW {
		t.Errorf("pixel hit = %v; want page view of the Referer with title and property", h)
	}
	// Refusals name the problem; an opted-out browser still gets its image.
	for _, tc := range []struct {
		query   string
		headers map[string]string
		status  int
		message string
	}{
		{"client_id=nobody&url=https://a.example/", nil, 400, `{"error":"unknown client_id \"nobody\""}`},
		{"client_id=shop", nil, 400, `{"error":"url is required for a pageview"}`},
		{"client_id=shop&url=https://a.example/&colour=red", nil, 400, `{"error":"unknown parameter \"colour\""}`},
		{"client_id=shop&url=https://a.example/&screen_width=wide", nil, 400, `{"error":"screen_width \"wide\": want a whole number"}`},
		{"client_id=shop&url=https://a.example/", map[string]string{"Cookie": OptOutCookie + "=1"}, 200, "GIF89a"},
	} {
		r := send(t, "GET", f.url+"/p.gif?"+tc.query, nil, tc.headers)
		if r.status != tc.status || !strings.Contains(r.body, tc.message) {
			t.Errorf("GET /p.gif?%s = %d %s; want %d with %s", tc.query, r.status, r.body, tc.status, tc.message)
		}
	}
	if r := send(t, "POST", f.url+"/p.gif", []byte("{}"), nil); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /p.gif = %d (Allow %q); want 405 with Allow: GET, HEAD", r.status, r.header.Get("Allow"))
	}
}

func cookieNamed(r response, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// deleted reports whether a Set-Cookie removes the cookie.
func deleted(c *http.Cookie) bool {
	return c != nil && (c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())))
}

func TestOptOutAndOptIn(t *testing.T) {
	f := start(t)
	r := send(t, "GET", f.url+"/optout", nil, nil)
	c := cookieNamed(r, OptOutCookie)
	if r.status != 200 || !strings.Contains(r.body, "You are opted out") || c == nil || c.Value != "1" || c.MaxAge < 365*24*3600 || c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Fatalf("GET /optout = %d, cookie %+v; want the page and a year-long, script-readable, Lax opt-out cookie on /", r.status, c)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("opt-out page Cache-Control = %q; want no-store", r.header.Get("Cache-Control"))
	}
	if v := cookieNamed(r, VisitorCookie); !deleted(v) {
		t.Errorf("GET /optout visitor cookie = %+v; want it deleted", v)
	}
	// Over HTTPS (a trusted proxy says so) the cookie must travel cross-site.
	g := start(t, func(c *Config) { c.Proxies, _ = clientip.Parse("127.0.0.1") })
	r = send(t, "GET", g.url+"/optout", nil, map[string]string{"X-Forwarded-Proto": "https"})
	if c := cookieNamed(r, OptOutCookie); c == nil || !c.Secure || c.SameSite != http.SameSiteNoneMode {
		t.Errorf("GET /optout over HTTPS: cookie %+v; want Secure; SameSite=None", c)
	}
	r = send(t, "GET", f.url+"/optin", nil, map[string]string{"Cookie": OptOutCookie + "=1"})
	if c := cookieNamed(r, OptOutCookie); r.status != 200 || !strings.Contains(r.body, "You are opted in") || !deleted(c) {
		t.Errorf("GET /optin = %d, cookie %+v; want the page and the cookie deleted", r.status, c)
	}
	if r := send(t, "POST", f.url+"/optout", nil, nil); r.status != 204 || cookieNamed(r, OptOutCookie) == nil {
		t.Errorf("POST /optout = %d; want 204 with the cookie", r.status)
	}
	// Every intake endpoint drops an opted-out browser's hits for every client.
	opted := map[string]string{"Cookie": OptOutCookie + "=1"}
	for _, tc := range []struct {
		path   string
		body   string
		status int
	}{
		{"/api/event", `{"client_id":"blog","url":"https://blog.example/"}`, 204},
		{"/api/batch", `[{"client_id":"shop","url":"https://shop.example/"}]`, 204},
		{"/v1/track", `{"writeKey":"wk_app","userId":"u","event":"E"}`, 200},
	} {
		if r := send(t, "POST", f.url+tc.path, []byte(tc.body), opted); r.status != tc.status || (tc.status == 204 && r.body != "") {
			t.Errorf("opted-out POST %s = %d %q; want %d", tc.path, r.status, r.body, tc.status)
		}
	}
	assertEmpty(t, f)
	if got := testutil.ToFloat64(f.handler.dropped.WithLabelValues("opt_out")); got != 3 {
		t.Errorf("dropped{reason=opt_out} = %v; want 3", got)
	}
}

// TestChildDirectedClientSendsCountsOnly: for a child-directed client the
// collector reads and sets no visitor cookie, forwards no user id, cuts the
// IP to its network and keeps only allow-listed properties (none, when the
// client lists none).
func TestChildDirectedClientSendsCountsOnly(t *testing.T) {
	f := start(t)
	browser := map[string]string{"Origin": "https://kids.example", "Cookie": VisitorCookie + "=0123456789abcdef0123456789abcdef"}
	for _, body := range []string{
		`{"write_key":"wk_kids","event_id":"k1","url":"https://kids.example/","user_id":"child-7","properties":{"level":"3","name":"Ann"}}`,
		`{"client_id":"kids2","event_id":"k2","url":"https://kids.example/","user_id":"child-8","properties":{"level":"3"}}`,
	} {
		r := send(t, "POST", f.url+"/api/event", []byte(body), browser)
		if r.status != 202 || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("child-directed event = %d, Set-Cookie %q; want 202 and no cookie", r.status, r.header.Values("Set-Cookie"))
		}
	}
	r := send(t, "POST", f.url+"/v1/track", []byte(`{"writeKey":"wk_kids","messageId":"k3","userId":"child-9","anonymousId":"anon-1","event":"Played","properties":{"level":"4","email":"a@b.example"}}`), nil)
	if r.status != 200 {
		t.Fatalf("Segment track = %d %s", r.status, r.body)
	}
	hits := byEventID(readHits(t, f, 3))
	want := map[string]map[string]string{"k1": {"level": "3"}, "k2": nil, "k3": {"level": "4"}}
	for id, props := range want {
		h := hits[id]
		if h == nil {
			t.Fatalf("no hit %s", id)
		}
		if h.CookieId != "" || h.UserId != "" || !bytes.Equal(h.Ip, []byte{127, 0, 0, 0}) || !maps.Equal(h.Properties, props) {
			t.Errorf("hit %s: cookie id %q, user id %q, ip %v, properties %v; want none, none, 127.0.0.0 and %v", id, h.CookieId, h.UserId, h.Ip, h.Properties, props)
		}
	}
}

func TestCookieModeAndCookieless(t *testing.T) {
	f := start(t)
	origin := map[string]string{"Origin": "https://app.example"}
	r := send(t, "POST", f.url+"/api/event", []byte(`{"write_key":"wk_app","event_id":"c1","url":"https://app.example/"}`), origin)
	c := cookieNamed(r, VisitorCookie)
	if r.status != 202 || c == nil || len(c.Value) != 32 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.MaxAge < 300*24*3600 {
		t.Fatalf("cookie-mode client over HTTP: %d, cookie %+v; want 202 and an HttpOnly, Lax, 13-month visitor cookie (not Secure over plain HTTP)", r.status, c)
	}
	// The browser sends it back: the same id, no new cookie needed.
	with := map[string]string{"Origin": "https://app.example", "Cookie": VisitorCookie + "=" + c.Value}
	if r := send(t, "POST", f.url+"/api/event", []byte(`{"write_key":"wk_app","event_id":"c2","url":"https://app.example/2"}`), with); r.status != 202 {
		t.Fatalf("second hit = %d %s", r.status, r.body)
	}
	// A cookieless client never gets a cookie, and one sent is ignored.
	r = send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"shop","event_id":"s1","url":"https://shop.example/"}`), map[string]string{"Cookie": VisitorCookie + "=" + c.Value})
	if r.status != 202 || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("cookieless client: %d, Set-Cookie %q; want 202 and no cookie", r.status, r.header.Values("Set-Cookie"))
	}
	hits := byEventID(readHits(t, f, 3))
	if hits["c1"].CookieId != c.Value || hits["c2"].CookieId != c.Value || hits["s1"].CookieId != "" {
		t.Errorf("cookie ids c1, c2, s1 = %q, %q, %q; want %q twice then none", hits["c1"].CookieId, hits["c2"].CookieId, hits["s1"].CookieId, c.Value)
	}
}

func TestTrustedProxiesAndExclusions(t *testing.T) {
	f := start(t, func(c *Config) { c.Proxies, _ = clientip.Parse("127.0.0.0/8") })
	g := start(t) // trusts nobody
	xff := map[string]string{"X-Forwarded-For": "6.6.6.6, 198.51.100.20"}
	if r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"shop","event_id":"p1","url":"https://shop.example/"}`), xff); r.status != 202 {
		t.Fatalf("POST via trusted proxy = %d %s", r.status, r.body)
	}
	if r := send(t, "POST", g.url+"/api/event", []byte(`{"client_id":"shop","event_id":"p2","url":"https://shop.example/"}`), xff); r.status != 202 {
		t.Fatalf("POST from untrusted peer = %d %s", r.status, r.body)
	}
	if ip := net.IP(readHits(t, f, 1)[0].Ip).String(); ip != "198.51.100.20" {
		t.Errorf("IP behind a trusted proxy = %s; want the rightmost untrusted X-Forwarded-For entry 198.51.100.20", ip)
	}
	if ip := net.IP(readHits(t, g, 1)[0].Ip).String(); ip != "127.0.0.1" {
		t.Errorf("IP from an untrusted peer = %s; want the peer, X-Forwarded-For ignored", ip)
	}

	// shop excludes 192.0.2.0/24, staging.shop.example and /admin/*.
	h := start(t, func(c *Config) { c.Proxies, _ = clientip.Parse("127.0.0.1") })
	for _, tc := range []struct {
		name, body, xff, reason string
	}{
		{"staff address", `{"client_id":"shop","url":"https://shop.example/"}`, "192.0.2.44", "excluded_ip"},
		{"test host", `{"client_id":"shop","url":"https://staging.shop.example/"}`, "198.51.100.1", "excluded_hostname"},
		{"admin path", `{"client_id":"shop","url":"https://shop.example/admin/orders"}`, "198.51.100.1", "excluded_path"},
	} {
		r := send(t, "POST", h.url+"/api/event", []byte(tc.body), map[string]string{"X-Forwarded-For": tc.xff})
		if r.status != 204 || r.body != "" {
			t.Errorf("%s: POST = %d %q; want 204 with no body", tc.name, r.status, r.body)
		}
		if got := testutil.ToFloat64(h.handler.dropped.WithLabelValues(tc.reason)); got != 1 {
			t.Errorf("%s: dropped{reason=%s} = %v; want 1", tc.name, tc.reason, got)
		}
	}
	// In a batch, excluded hits are dropped and the rest stored.
	r := send(t, "POST", h.url+"/api/batch", []byte(`[{"client_id":"shop","event_id":"keep","url":"https://shop.example/"},
		{"client_id":"shop","event_id":"drop","url":"https://shop.example/admin/"}]`), map[string]string{"X-Forwarded-For": "198.51.100.1"})
	if r.status != 202 || !strings.Contains(r.body, `"accepted":1,"dropped":1`) {
		t.Errorf("batch with one excluded hit = %d %s; want 202 with accepted 1, dropped 1", r.status, r.body)
	}
	if got := readHits(t, h, 1)[0].EventId; got != "keep" {
		t.Errorf("stored %q; want only the hit that is not excluded", got)
	}
}

func TestCORS(t *testing.T) {
	f := start(t)
	ev := []byte(`{"client_id":"shop","url":"https://shop.example/"}`)
	// Allowed: one of the client's domains or a subdomain.
	r := send(t, "POST", f.url+"/api/event", ev, map[string]string{"Origin": "https://www.shop.example"})
	if r.status != 202 || r.header.Get("Access-Control-Allow-Origin") != "https://www.shop.example" || r.header.Get("Access-Control-Allow-Credentials") != "true" || r.header.Get("Vary") != "Origin" {
		t.Errorf("allowed origin: %d, headers %v; want 202 with the origin allowed with credentials", r.status, r.header)
	}
	// Another site cannot send events in shop's name, nor read anything.
	r = send(t, "POST", f.url+"/api/event", ev, map[string]string{"Origin": "https://evil.example"})
	if r.status != 403 || r.body != `{"error":"origin \"https://evil.example\" is not one of the sites of client shop"}` || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin: %d %s, ACAO %q; want 403 naming origin and client, without CORS headers", r.status, r.body, r.header.Get("Access-Control-Allow-Origin"))
	}
	// A client without domains accepts any origin, never with credentials.
	r = send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/"}`), map[string]string{"Origin": "https://blog.example"})
	if r.status != 202 || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("client without domains: %d, ACAC %q; want 202 without credentials", r.status, r.header.Get("Access-Control-Allow-Credentials"))
	}
	pre := map[string]string{"Origin": "https://shop.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
	r = send(t, "OPTIONS", f.url+"/api/event?client_id=shop", nil, pre)
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example" || !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Content-Type") || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight of an allowed origin: %d %v; want 204 allowing POST and Content-Type with credentials", r.status, r.header)
	}
	pre["Origin"] = "https://evil.example"
	if r := send(t, "OPTIONS", f.url+"/api/event?client_id=shop", nil, pre); r.status != 403 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of a foreign origin: %d, ACAO %q; want 403 without CORS headers", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	if r := send(t, "OPTIONS", f.url+"/v1/batch", nil, pre); r.status != 204 || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight without a client: %d, ACAC %q; want 204 without credentials", r.status, r.header.Get("Access-Control-Allow-Credentials"))
	}
	if n := len(readHits(t, f, 2)); n != 2 {
		t.Errorf("stored %d; want the 2 allowed hits", n)
	}
}

func TestScriptServing(t *testing.T) {
	f := start(t)
	r := send(t, "GET", f.url+"/t.js", nil, map[string]string{"Accept-Encoding": "gzip"})
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/javascript") || len(r.body) >= 2048 {
		t.Fatalf("GET /t.js = %d, %v, %d bytes; want gzipped JavaScript under 2 KB", r.status, r.header, len(r.body))
	}
	if r2 := send(t, "GET", f.url+"/t.js", nil, map[string]string{"If-None-Match": r.header.Get("ETag")}); r2.status != 304 {
		t.Errorf("GET /t.js with its ETag = %d; want 304", r2.status)
	}
	plain := send(t, "GET", f.url+"/t.js", nil, map[string]string{"Accept-Encoding": "identity"})
	if !bytes.Contains([]byte(plain.body), []byte("'/api/event'")) {
		t.Errorf("t.js does not hold the configured event path")
	}
}

func TestHeadersAreStoredAsValidUTF8(t *testing.T) {
	f := start(t)
	r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/"}`),
		map[string]string{"User-Agent": "Bot\xff/1.0", "Accept-Language": "de\xfe", "Sec-CH-UA": `"Chromium";v="131"`, "Sec-CH-UA-Platform": `"Linux"`})
	if r.status != 202 {
		t.Fatalf("POST with non-UTF-8 headers = %d %s; want 202", r.status, r.body)
	}
	h := readHits(t, f, 1)[0] // readHits decodes with proto.Unmarshal, which checks UTF-8
	if h.UserAgent != "Bot\uFFFD/1.0" || h.Language != "de\uFFFD" || h.ClientHints.GetUaPlatform() != `"Linux"` {
		t.Errorf("user agent, language, platform = %q, %q, %q; want the headers repaired to valid UTF-8 and client hints kept", h.UserAgent, h.Language, h.ClientHints.GetUaPlatform())
	}
}

func TestServerSendsInCookieModeGetNoVisitor(t *testing.T) {
	f := start(t)
	// No Origin, no cookie: a server's send, which cannot keep a cookie.
	r := send(t, "POST", f.url+"/api/event", []byte(`{"write_key":"wk_app","event_id":"srv","url":"https://app.example/"}`), nil)
	if r.status != 202 || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("server send in cookie mode = %d, Set-Cookie %q; want 202 without a cookie", r.status, r.header.Values("Set-Cookie"))
	}
	if r := send(t, "POST", f.url+"/v1/track", []byte(`{"anonymousId":"anon-7","event":"E"}`), basic("wk_app")); r.status != 200 {
		t.Fatalf("segment send = %d %s", r.status, r.body)
	}
	hits := readHits(t, f, 2)
	for _, h := range hits {
		if want := map[string]string{"srv": ""}[h.EventId]; h.EventId == "srv" && h.CookieId != want {
			t.Errorf("server send got cookie id %q; want none", h.CookieId)
		} else if h.EventId != "srv" && h.CookieId != "anon-7" {
			t.Errorf("segment send got cookie id %q; want the anonymousId anon-7", h.CookieId)
		}
	}
}
