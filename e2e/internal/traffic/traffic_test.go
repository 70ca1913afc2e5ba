package traffic

import (
	"encoding/json"
	"strings"
	"testing"
)

func testCorpus(t *testing.T) *Corpus {
	t.Helper()
	c, err := LoadCorpus("../../../enricher/testdata/intoli-user-agents/user-agents.json", "../../../enricher/testdata/referer-parser/referer-tests.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequestsAreBatchesOfValidEventsWithSequentialIDs(t *testing.T) {
	g := NewGenerator(Config{Client: "c", Site: "s.example", Visitors: 100, Unseen: 0.5, Batch: 5, IDPrefix: "b-"}, testCorpus(t), 1)
	for i := range 50 {
		r, err := g.Next(uint64(i * 5))
		if err != nil {
			t.Fatal(err)
		}
		var events []map[string]any
		if err := json.Unmarshal(r.Body, &events); err != nil {
			t.Fatalf("request %d: body %s: %v", i, r.Body, err)
		}
		if len(events) != 5 || r.Path != "/api/batch" || r.UserAgent == "" || r.IP == "" {
			t.Fatalf("request %d: %d events to %s from %q at %q; want 5 to /api/batch with a user agent and an address", i, len(events), r.Path, r.UserAgent, r.IP)
		}
		for j, e := range events {
			if want := "b-" + itoa(i*5+j); e["event_id"] != want {
				t.Errorf("request %d event %d: event_id %v; want %s", i, j, e["event_id"], want)
			}
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestUnseenUserAgentsAreNewAndReturningOnesRepeat(t *testing.T) {
	c := testCorpus(t)
	known := map[string]bool{}
	for _, ua := range c.UserAgents {
		known[ua] = true
	}
	g := NewGenerator(Config{Client: "c", Site: "s.example", Visitors: 10, Unseen: 0.2, Batch: 1}, c, 2)
	unseen, seen := map[string]bool{}, 0
	for i := range 2000 {
		r, err := g.Next(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Path != "/api/event" {
			t.Fatalf("a batch of 1 goes to %s; want /api/event", r.Path)
		}
		if known[r.UserAgent] {
			seen++
		} else {
			if unseen[r.UserAgent] {
				t.Errorf("unseen user agent %q sent twice", r.UserAgent)
			}
			unseen[r.UserAgent] = true
		}
	}
	// 20 % of 2,000, give or take five standard deviations (about 90).
	if n := len(unseen); n < 310 || n > 490 {
		t.Errorf("%d unseen user agents in 2,000 requests at a share of 0.2; want about 400", n)
	}
}

func TestUnseenKeepsTheShapeOfTheUserAgent(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Mozilla/5.0 (X11) Chrome/148.0.0.0 Safari/537.36", "Mozilla/5.0 (X11) Chrome/148.0.0.7 Safari/537.36"},
		{"curl/8", "curl/8 Build/7"},
		{"Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 (KHTML) Version/26.6", "Mozilla/5.0 (iPhone) AppleWebKit/605.1.7 (KHTML) Version/26.6"},
	} {
		if got := unseen(tc.in, 7); got != tc.want {
			t.Errorf("unseen(%q, 7) = %q; want %q", tc.in, got, tc.want)
		}
	}
	if !strings.Contains(unseen("Mozilla/5.0", 123), "123") {
		t.Error("unseen must put its number in the user agent")
	}
}
