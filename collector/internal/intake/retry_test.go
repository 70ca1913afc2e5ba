package intake

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/aluminiapp/pipeline/collector/internal/clientip"
)

// TestRetryFromAnotherAddress: the collector answers a retry of an
// accepted event from another address like the first send, and both hits
// carry the client and event id that make them one event downstream
// (the sinker stores the first copy); only the address differs.
func TestRetryFromAnotherAddress(t *testing.T) {
	f := start(t, func(c *Config) { c.Proxies, _ = clientip.Parse("127.0.0.1") })
	body := []byte(`{"client_id":"shop","event_id":"r1","url":"https://shop.example/"}`)
	for _, addr := range []string{"198.51.100.1", "203.0.113.9"} {
		if r := send(t, "POST", f.url+"/api/event", body, map[string]string{"X-Forwarded-For": addr}); r.status != 202 {
			t.Fatalf("POST from %s = %d %s; want 202", addr, r.status, r.body)
		}
	}
	hits := readHits(t, f, 2)
	if hits[0].ClientId != "shop" || hits[1].ClientId != "shop" || hits[0].EventId != "r1" || hits[1].EventId != "r1" {
		t.Errorf("hits (client, event) = (%s, %s), (%s, %s); want (shop, r1) twice", hits[0].ClientId, hits[0].EventId, hits[1].ClientId, hits[1].EventId)
	}
	a, _ := netip.AddrFromSlice(hits[0].Ip)
	b, _ := netip.AddrFromSlice(hits[1].Ip)
	if a == b {
		t.Errorf("both hits come from %v; the test means two addresses", a)
	}
}

// TestRetryWithoutCookieKeepsTheVisitor: in cookie mode, with a cookie
// secret, a request without the cookie gets a cookie id derived from the
// client and event id, so a retry of it (the browser never saw the first
// answer, whose event reached Kafka) gets the visitor of the first send,
// not a second one; another event gets another visitor. Without a secret
// the ids stay random (the negative control: the retry is a new visitor).
func TestRetryWithoutCookieKeepsTheVisitor(t *testing.T) {
	origin := map[string]string{"Origin": "https://app.example"}
	send2 := func(f fixture, id string) string {
		t.Helper()
		r := send(t, "POST", f.url+"/api/event", []byte(`{"write_key":"wk_app","event_id":"`+id+`","url":"https://app.example/"}`), origin)
		c := cookieNamed(r, VisitorCookie)
		if r.status != 202 || c == nil {
			t.Fatalf("POST %s = %d %s, cookie %v; want 202 with a visitor cookie", id, r.status, r.body, c)
		}
		return c.Value
	}
	f := start(t, func(c *Config) { c.CookieSecret = bytes.Repeat([]byte("k"), 32) })
	first, retry, other := send2(f, "v1"), send2(f, "v1"), send2(f, "v2")
	if retry != first || other == first {
		t.Errorf("cookies of v1, its retry, v2 = %s, %s, %s; want the first two equal, the third other", first, retry, other)
	}
	for _, h := range readHits(t, f, 3) {
		if want := map[string]string{"v1": first, "v2": other}[h.EventId]; h.CookieId != want {
			t.Errorf("%s's cookie id in Kafka = %q; want %q", h.EventId, h.CookieId, want)
		}
	}
	g := start(t)
	if a, b := send2(g, "v1"), send2(g, "v1"); a == b {
		t.Errorf("without a cookie secret a retry got the same cookie %s; want random ids", a)
	}
}
