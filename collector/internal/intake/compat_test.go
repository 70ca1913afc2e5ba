package intake

import (
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

var textPlain = map[string]string{"Content-Type": "text/plain"}

func withHeaders(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestPlausiblePayloads sends what Plausible's trackers send (the short
// names of @plausible-analytics/tracker, the JSON-string props of
// plausible-tracker, the long names of Plausible's server API) to the
// event path, beside a native event, and reads the hits back.
func TestPlausiblePayloads(t *testing.T) {
	f := start(t)
	for _, body := range []string{
		`{"n":"pageview","v":36,"u":"https://shop.example/pricing?utm_source=news","d":"shop.example","r":"https://www.google.com/"}`,
		`{"n":"Signup","v":36,"u":"https://shop.example/pricing","d":"shop.example","r":null,"p":{"plan":"pro","seats":3},"$":{"amount":"15.99","currency":"EUR"},"i":false}`,
		`{"n":"Download","u":"https://shop.example/files","d":"other.example,SHOP.example","r":null,"w":1280,"h":0,"p":"{\"file\":\"a.pdf\"}"}`,
		`{"name":"Server","url":"https://shop.example/api","domain":"shop.example","referrer":"","props":{"ok":true},"revenue":{"amount":3,"currency":"USD"}}`,
		// Time on page of the page view before: answered, not stored.
		`{"n":"engagement","sd":50,"d":"shop.example","u":"https://shop.example/pricing","p":{},"e":3012,"v":36}`,
	} {
		r := send(t, "POST", f.url+"/api/event", []byte(body), textPlain)
		if r.status != 202 || r.body != "ok" {
			t.Fatalf("POST %s = %d %q; want 202 ok, as Plausible answers", body, r.status, r.body)
		}
	}
	// The native format on the same path is untouched.
	r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"shop","event_id":"native-1","url":"https://shop.example/d","properties":{"d":"x"}}`), nil)
	if r.status != 202 || !strings.Contains(r.body, `"event_id":"native-1"`) {
		t.Fatalf("native event = %d %s; want 202 with its event id", r.status, r.body)
	}
	hits := readHits(t, f, 5)
	byName := map[string]*aluminiv1.RawHit{}
	for _, h := range hits {
		if h.ClientId != "shop" || h.EventId == "" || h.UserAgent == "" || net.IP(h.Ip).String() != "127.0.0.1" {
			t.Errorf("hit %v: want shop's, with an event id, the request's user agent and address", h)
		}
		key := h.Name
		if h.Type == aluminiv1.EventType_EVENT_TYPE_PAGEVIEW {
			key = "pageview:" + h.Url
		}
		byName[key] = h
	}
	if h := byName["pageview:https://shop.example/pricing?utm_source=news"]; h == nil || h.Referrer != "https://www.google.com/" {
		t.Errorf("page view = %v; want the URL and referrer as sent", h)
	}
	if h := byName["Signup"]; h == nil || h.Type != aluminiv1.EventType_EVENT_TYPE_CUSTOM || h.Properties["plan"] != "pro" || h.Properties["seats"] != "3" ||
		h.Properties["revenue_amount"] != "15.99" || h.Properties["revenue_currency"] != "EUR" || h.Referrer != "" {
		t.Errorf("custom event = %v; want Signup with its props and revenue", h)
	}
	if h := byName["Download"]; h == nil || h.Properties["file"] != "a.pdf" || h.ScreenWidth != 1280 {
		t.Errorf("plausible-tracker event = %v; want its JSON-string props and screen width, filed under the domain a client lists", h)
	}
	if h := byName["Server"]; h == nil || h.Properties["ok"] != "true" || h.Properties["revenue_amount"] != "3" || h.Url != "https://shop.example/api" {
		t.Errorf("long-name event = %v; want its props and revenue", h)
	}
	if n := testutil.ToFloat64(f.handler.dropped.WithLabelValues("unsupported_type")); n != 1 {
		t.Errorf("unsupported_type drops = %v; want 1 (the engagement event)", n)
	}
}

func TestPlausibleRefusals(t *testing.T) {
	f := start(t)
	for _, tc := range []struct{ body, want string }{
		{`{"n":"pageview","u":"https://x.example/","d":"unknown.example"}`, "no client lists the domain"},
		{`{"n":"pageview","u":"https://shop.example/","d":""}`, "d (the site's domain) is required"},
		{`{"u":"https://shop.example/","d":"shop.example"}`, "n (the event name) is required"},
		{`{"n":"pageview","d":"shop.example"}`, "u (the page URL) is required"},
		{`{"n":"pageview","u":"not a url","d":"shop.example"}`, "want an absolute http or https URL"},
		{`{"n":"x","u":"https://shop.example/","d":"shop.example","p":{"a":{"b":1}}}`, "want a string, number or boolean"},
		{`{"n":"x","u":"https://shop.example/","d":"shop.example","$":{"amount":"lots","currency":"EUR"}}`, "revenue.amount"},
		{`{"n":"pageview","u":"https://shop.example/","d":"shop.example","d":"kids.example"}`, "appears twice"},
		{`{"n":"x","u":"https://shop.example/","d":"shop.example","p":"{\"a\":1,\"a\":2}"}`, "appears twice"},
	} {
		r := send(t, "POST", f.url+"/api/event", []byte(tc.body), textPlain)
		if r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Errorf("POST %s = %d %s; want 400 saying %q", tc.body, r.status, r.body, tc.want)
		}
	}
	assertEmpty(t, f)
}

// TestCompatPrivacyRules: the privacy rules of the native path apply to
// Plausible's and Umami's events as they are (same checks, same counts).
func TestCompatPrivacyRules(t *testing.T) {
	f := start(t)
	plausible := func(path string) string {
		return `{"n":"pageview","u":"https://shop.example` + path + `","d":"shop.example","r":null}`
	}
	umami := func(path string) string {
		return `{"type":"event","payload":{"website":"umami-shop","hostname":"shop.example","url":"` + path + `","language":"de-DE","screen":"1280x800"}}`
	}
	for _, tc := range []struct {
		name, path, body string
		headers          map[string]string
		status           int
		reason           string
	}{
		{"plausible dnt", "/api/event", plausible("/a"), withHeaders(textPlain, "DNT", "1"), 202, "dnt"},
		{"plausible gpc", "/api/event", plausible("/a"), withHeaders(textPlain, "Sec-GPC", "1"), 202, "gpc"},
		{"plausible excluded path", "/api/event", plausible("/admin/x"), textPlain, 202, "excluded_path"},
		{"plausible opt-out", "/api/event", plausible("/a"), withHeaders(textPlain, "Cookie", OptOutCookie+"=1"), 204, "opt_out"},
		{"plausible foreign origin", "/api/event", plausible("/a"), withHeaders(textPlain, "Origin", "https://evil.example"), 403, "forbidden_origin"},
		{"umami dnt", "/api/send", umami("/a"), map[string]string{"DNT": "1"}, 200, "dnt"},
		{"umami excluded path", "/api/send", umami("/admin/y"), nil, 200, "excluded_path"},
		{"umami opt-out", "/api/send", umami("/a"), map[string]string{"Cookie": OptOutCookie + "=1"}, 200, "opt_out"},
		{"umami foreign origin", "/api/send", umami("/a"), map[string]string{"Origin": "https://evil.example"}, 403, "forbidden_origin"},
	} {
		before := 0.0
		if tc.reason != "" {
			before = testutil.ToFloat64(f.handler.dropped.WithLabelValues(tc.reason))
		}
		r := send(t, "POST", f.url+tc.path, []byte(tc.body), tc.headers)
		if r.status != tc.status {
			t.Errorf("%s: status %d %s; want %d", tc.name, r.status, r.body, tc.status)
		}
		if tc.status == 202 && tc.reason != "" && r.header.Get("X-Plausible-Dropped") != "1" {
			t.Errorf("%s: want X-Plausible-Dropped: 1 on a dropped event", tc.name)
		}
		if tc.reason != "" {
			if n := testutil.ToFloat64(f.handler.dropped.WithLabelValues(tc.reason)) - before; n != 1 {
				t.Errorf("%s: %s drops rose by %v; want 1", tc.name, tc.reason, n)
			}
		}
	}
	assertEmpty(t, f)

	// A child-directed client: counts only, as for its native events.
	for _, tc := range []struct{ path, body string }{
		{"/api/event", `{"n":"Level","u":"https://kids.example/","d":"kids.example","p":{"nickname":"Ann"}}`},
		{"/api/send", `{"type":"event","payload":{"website":"umami-kids","hostname":"kids.example","url":"/","name":"Level","data":{"nickname":"Ann"}}}`},
	} {
		r := send(t, "POST", f.url+tc.path, []byte(tc.body), map[string]string{"Origin": "https://kids.example", "Cookie": VisitorCookie + "=0123456789abcdef0123456789abcdef"})
		if r.status/100 != 2 || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("POST %s = %d; want 2xx and no cookie", tc.path, r.status)
		}
	}
	for _, h := range readHits(t, f, 2) {
		if h.ClientId != "kids2" || h.CookieId != "" || len(h.Properties) != 0 || net.IP(h.Ip).String() != "127.0.0.0" {
			t.Errorf("child-directed hit %v: want kids2's, no cookie id, no property, the IP cut to its /24", h)
		}
	}
}

// TestUmamiPayloads sends what Umami's tracker script and @umami/node
// send to /api/send.
func TestUmamiPayloads(t *testing.T) {
	f := start(t)
	for _, body := range []string{
		// The script's page view: path, host name, encoded title.
		`{"type":"event","payload":{"website":"umami-shop","hostname":"shop.example","screen":"1920x1080","language":"en-US","title":"Shop%20%26%20more","url":"/pricing?utm_campaign=spring","referrer":"https://www.google.com/"}}`,
		// The script's custom event.
		`{"type":"event","payload":{"website":"umami-shop","hostname":"shop.example","screen":"1920x1080","language":"en-US","title":"Shop","url":"/pricing","referrer":"","name":"Signup","data":{"plan":"pro","seats":3,"cart":{"total":9.5},"tags":["a","b"]}}}`,
		// @umami/node's track("Server", {...}): no page at all.
		`{"type":"event","payload":{"website":"umami-shop","name":"Server","data":{"job":"nightly"}}}`,
		// @umami/node's track({url}) without a host name: the client's first domain.
		`{"type":"event","payload":{"website":"umami-shop","url":"/from-node"}}`,
		// identify: traits of a person, not stored.
		`{"type":"identify","payload":{"website":"umami-shop","data":{"email":"a@b.example"}}}`,
	} {
		r := send(t, "POST", f.url+"/api/send", []byte(body), nil)
		if r.status != 200 || r.body != `{"cache":""}` {
			t.Fatalf("POST %s = %d %s; want 200 {\"cache\":\"\"}", body, r.status, r.body)
		}
	}
	hits := readHits(t, f, 4)
	got := map[string]*aluminiv1.RawHit{}
	for _, h := range hits {
		if h.ClientId != "shop" || h.EventId == "" || h.UserAgent == "" {
			t.Errorf("hit %v: want shop's, with an event id and the request's user agent", h)
		}
		got[h.Name+" "+h.Url] = h
	}
	if h := got[" https://shop.example/pricing?utm_campaign=spring"]; h == nil || h.Type != aluminiv1.EventType_EVENT_TYPE_PAGEVIEW ||
		h.Title != "Shop & more" || h.Referrer != "https://www.google.com/" || h.ScreenWidth != 1920 || h.ScreenHeight != 1080 || h.Language != "en-US" {
		t.Errorf("script page view = %v; want URL from host and path, decoded title, screen, language", h)
	}
	if h := got["Signup https://shop.example/pricing"]; h == nil || h.Type != aluminiv1.EventType_EVENT_TYPE_CUSTOM ||
		h.Properties["plan"] != "pro" || h.Properties["seats"] != "3" || h.Properties["cart.total"] != "9.5" || h.Properties["tags"] != `["a","b"]` {
		t.Errorf("script custom event = %v; want data flattened as Umami stores it", h)
	}
	if h := got["Server "]; h == nil || h.Properties["job"] != "nightly" {
		t.Errorf("node custom event = %v; want it without a page", h)
	}
	if h := got[" https://shop.example/from-node"]; h == nil {
		t.Errorf("node page view without a host name: want it on the client's first domain; got %v", got)
	}
	if n := testutil.ToFloat64(f.handler.dropped.WithLabelValues("unsupported_type")); n != 1 {
		t.Errorf("unsupported_type drops = %v; want 1 (identify)", n)
	}
	if n := testutil.ToFloat64(f.handler.requests.WithLabelValues("umami", "200")); n != 5 {
		t.Errorf("umami requests counted %v; want 5", n)
	}

	// Umami's script sends application/json with its cache header: a
	// preflight that must allow both.
	r := send(t, "OPTIONS", f.url+"/api/send", nil, map[string]string{"Origin": "https://shop.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-umami-cache"})
	if r.status != 204 || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "X-Umami-Cache") {
		t.Errorf("preflight = %d %v; want 204 allowing X-Umami-Cache", r.status, r.header)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"type":"event","payload":{"website":"nobody","url":"/"}}`, "no client lists the website id"},
		{`{"type":"event"}`, "payload is required"},
		{`{"type":"event","payload":{"url":"/"}}`, "payload.website"},
		{`{"type":"click","payload":{"website":"umami-shop","url":"/"}}`, "want event"},
		{`{"type":"event","payload":{"website":"umami-shop","website":"umami-kids","url":"/"}}`, "appears twice"},
		{`{"type":"event","payload":{"website":"umami-shop","hostname":"a/b","url":"/"}}`, "payload.hostname"},
	} {
		r := send(t, "POST", f.url+"/api/send", []byte(tc.body), nil)
		if r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Errorf("POST %s = %d %s; want 400 saying %q", tc.body, r.status, r.body, tc.want)
		}
	}
}
