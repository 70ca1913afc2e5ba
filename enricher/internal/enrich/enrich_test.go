package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/geo"
	"github.com/aluminiapp/pipeline/enricher/internal/geo/geotest"
	"github.com/aluminiapp/pipeline/enricher/internal/referrer"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// fixedSalts gives every day one known salt. The Kafka-backed store has
// its own tests against kfake; here the ids must only be stable.
type fixedSalts struct{}

func (fixedSalts) Salt(time.Time) ([]byte, error) {
	return []byte("fixed test salt, 32 bytes long.."), nil
}

const clientsYAML = `clients:
  - id: shop
    domains: [shop.example]
    keep_truncated_ip: true
  - id: blog
    cookie_mode: cookie
    bots: drop
  - id: news
  - id: kids
    child_directed: true
    allowed_properties: [level]
`

func testEnricher(t testing.TB) *Enricher {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(path, []byte(clientsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := useragent.New(1024)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := referrer.New()
	if err != nil {
		t.Fatal(err)
	}
	db, err := geo.Open(geotest.Write(t,
		geotest.Network{CIDR: "81.2.69.0/24", Country: "GB", Subdivision: "ENG", City: "London"},
		geotest.Network{CIDR: "195.51.170.0/24", Country: "DE", Subdivision: "BE", City: "Berlin"},
		geotest.Network{CIDR: "2001:db8:1::/48", Country: "DE", Subdivision: "BY", City: "Munich"},
	))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return New(Config{
		Clients: reg, Visitors: visitor.New([]byte("test secret test secret test sec"), fixedSalts{}),
		UserAgents: ua, Referrers: refs, Geo: db,
	})
}

// TestGolden enriches the raw hits of testdata/hits and compares each
// event with testdata/golden/<name>.json (refresh with -update). A hit
// whose client drops bots has golden output {"dropped": "<error>"}.
func TestGolden(t *testing.T) {
	e := testEnricher(t)
	hits, err := filepath.Glob(filepath.Join("testdata", "hits", "*.json"))
	if err != nil || len(hits) < 10 {
		t.Fatalf("found %d raw hits (%v); want the golden set", len(hits), err)
	}
	for _, path := range hits {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var hit aluminiv1.RawHit
			if err := protojson.Unmarshal(raw, &hit); err != nil {
				t.Fatalf("parsing %s: %v", path, err)
			}
			var got []byte
			ev, err := e.Enrich(&hit)
			switch {
			case errors.Is(err, ErrBot):
				got = []byte(`{"dropped": "` + err.Error() + `"}`)
			case err != nil:
				t.Fatal(err)
			default:
				if ev.IpTruncated == "" && bytes.Contains(mustMarshal(t, ev), hit.Ip) {
					t.Errorf("event of %s carries the IP address", name)
				}
				got, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
			}
			got = indent(t, got)
			golden := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Enrich(%s) =\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indent gives protojson's output (whose spacing varies on purpose) one
// stable form.
func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, compact(t, b), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestAttribution(t *testing.T) {
	e := testEnricher(t)
	for _, tc := range []struct {
		url, referrer        string
		source, medium, term string
	}{
		{"https://shop.example/", "", "", "direct", ""},
		{"https://shop.example/", "https://shop.example/cart", "", "internal", ""},
		{"https://shop.example/", "https://blog.shop.example/post", "", "internal", ""},
		{"https://shop.example/", "https://news.example.org/a", "news.example.org", "unknown", ""},
		{"https://shop.example/", "not a url", "", "unknown", ""},
		{"https://shop.example/", "https://www.google.de/search?q=schuhe", "Google", "search", "schuhe"},
		{"https://shop.example/", "https://www.bing.com/search?q=boots&form=QBLH", "Bing", "search", "boots"},
		{"https://shop.example/", "https://t.co/abc", "Twitter", "social", ""},
		{"https://shop.example/", "https://chatgpt.com/", "ChatGPT", "chatbot", ""},
		{"https://shop.example/?gclid=x", "https://www.google.com/", "Google", "paid", ""},
		{"https://shop.example/?msclkid=x", "https://www.bing.com/", "Microsoft Advertising", "paid", ""},
		{"https://shop.example/?fbclid=x", "https://l.facebook.com/", "Facebook", "paid", ""},
		{"https://shop.example/?utm_source=mailchimp&utm_medium=newsletter", "", "mailchimp", "email", ""},
		{"https://shop.example/?utm_source=bing&utm_medium=cpc", "https://www.bing.com/search?q=x", "bing", "paid", ""},
		{"https://shop.example/?utm_source=partner&utm_medium=podcast", "", "partner", "unknown", ""},
		{"https://shop.example/?a=1&utm_medium=e%2Dmail&utm_source=Mail+Chimp&utm_source=second", "", "Mail Chimp", "email", ""},
		{"https://shop.example/?fbclid=&gclid=abc", "", "Google", "paid", ""},
	} {
		ev, err := e.Enrich(&aluminiv1.RawHit{ClientId: "shop", Url: tc.url, Referrer: tc.referrer, UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"})
		if err != nil {
			t.Fatal(err)
		}
		if ev.ReferrerSource != tc.source || ev.ReferrerMedium != tc.medium || ev.SearchTerm != tc.term {
			t.Errorf("Enrich(url %q, referrer %q) = %q/%q/%q; want %q/%q/%q", tc.url, tc.referrer, ev.ReferrerSource, ev.ReferrerMedium, ev.SearchTerm, tc.source, tc.medium, tc.term)
		}
	}
	if _, err := e.Enrich(&aluminiv1.RawHit{ClientId: "gone"}); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Enrich of an unknown client = %v; want ErrUnknownClient", err)
	}
}

func TestSessionSource(t *testing.T) {
	for _, tc := range []struct {
		ev   *aluminiv1.Event
		want string
	}{
		{&aluminiv1.Event{ReferrerMedium: "direct"}, ""},
		{&aluminiv1.Event{ReferrerMedium: "internal"}, ""},
		{&aluminiv1.Event{ReferrerMedium: "search", ReferrerSource: "Google"}, "ref:search/Google"},
		{&aluminiv1.Event{ReferrerMedium: "email", UtmSource: "news", UtmCampaign: "nov"}, "utm:news/nov"},
	} {
		if got := SessionSource(tc.ev); got != tc.want {
			t.Errorf("SessionSource(%v) = %q; want %q", tc.ev, got, tc.want)
		}
	}
}
