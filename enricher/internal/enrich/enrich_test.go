package enrich

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func testEnricher(t *testing.T) *Enricher {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	doc := "clients:\n  - id: shop\n    domains: [shop.example]\n  - id: blog\n    cookie_mode: cookie\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return New(reg, visitor.New([]byte("test secret test secret test sec")))
}

func TestEnrichPassesFieldsThroughAndDropsIP(t *testing.T) {
	e := testEnricher(t)
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	hit := &aluminiv1.RawHit{
		ClientId: "shop", EventId: "e1", Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		Url: "https://Shop.example/pricing?utm_source=news&utm_medium=email&utm_campaign=nov", Title: "Pricing",
		Referrer: "https://www.google.com/search?q=x", UserAgent: "Mozilla/5.0", Ip: []byte{198, 51, 100, 4},
		ReceivedAtMs: received.UnixMilli(), SentAtMs: received.Add(-time.Second).UnixMilli(),
		Properties: map[string]string{"plan": "pro"}, ScreenWidth: 390,
	}
	ev, err := e.Enrich(hit)
	if err != nil {
		t.Fatal(err)
	}
	want := &aluminiv1.Event{
		ClientId: "shop", EventId: "e1", Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		TimestampMs: received.Add(-time.Second).UnixMilli(), ReceivedAtMs: received.UnixMilli(),
		Url: hit.Url, Hostname: "shop.example", Path: "/pricing", Title: "Pricing", Referrer: hit.Referrer,
		ReferrerSource: "google.com", ReferrerMedium: "unknown",
		UtmSource: "news", UtmMedium: "email", UtmCampaign: "nov", ScreenWidth: 390,
		Properties: map[string]string{"plan": "pro"},
	}
	if ev.VisitorId == 0 {
		t.Error("visitor id is 0; want one derived from IP and user agent")
	}
	ev.VisitorId = 0
	if !proto.Equal(ev, want) {
		t.Errorf("Enrich =\n%v\nwant\n%v", ev, want)
	}
}

func TestReferrerClassesAndVisitorScope(t *testing.T) {
	e := testEnricher(t)
	for _, tc := range []struct{ referrer, source, medium string }{
		{"", "", "direct"},
		{"https://shop.example/cart", "", "internal"},
		{"https://blog.shop.example/post", "", "internal"},
		{"https://news.example.org/a", "news.example.org", "unknown"},
		{"not a url", "", "unknown"},
	} {
		ev, err := e.Enrich(&aluminiv1.RawHit{ClientId: "shop", Url: "https://shop.example/", Referrer: tc.referrer})
		if err != nil {
			t.Fatal(err)
		}
		if ev.ReferrerSource != tc.source || ev.ReferrerMedium != tc.medium {
			t.Errorf("referrer %q = %q/%q; want %q/%q", tc.referrer, ev.ReferrerSource, ev.ReferrerMedium, tc.source, tc.medium)
		}
	}
	same := func(client string) uint64 {
		ev, err := e.Enrich(&aluminiv1.RawHit{ClientId: client, Url: "https://x.example/", Ip: []byte{1, 2, 3, 4}, UserAgent: "UA", ReceivedAtMs: 1764072000000})
		if err != nil {
			t.Fatal(err)
		}
		return ev.VisitorId
	}
	if same("shop") == same("blog") {
		t.Error("same IP and user agent on two clients gave one visitor id; want unrelated ids")
	}
	if _, err := e.Enrich(&aluminiv1.RawHit{ClientId: "gone"}); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Enrich of an unknown client = %v; want ErrUnknownClient", err)
	}
}
