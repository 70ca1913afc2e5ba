package uaregex

import (
	"flag"
	"testing"

	"github.com/ua-parser/uap-go/uaparser"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uacorpus"
)

var full = flag.Bool("full", false, "compare every uap-core device case, not every fourth")

func corpus(t testing.TB, name string) []string { return uacorpus.UserAgents(t, name) }

// TestSameAsUAPGo checks the prefiltered parser against uap-go itself on
// every user agent of the uap-core corpora: any literal the analysis got
// wrong would skip a rule uap-go runs and show here.
func TestSameAsUAPGo(t *testing.T) {
	ref, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	uas := append(corpus(t, "test_ua.yaml"), corpus(t, "test_os.yaml")...)
	// Every fourth device case keeps the test to seconds (uap-go itself
	// is the slow part); -run SameAs -full checks all 16,000.
	for i, ua := range corpus(t, "test_device.yaml") {
		if *full || i%4 == 0 {
			uas = append(uas, ua)
		}
	}
	uas = append(uas, "", "mozilla/5.0 (linux; android 9; sm-g960f) applewebkit/537.36 (khtml, like gecko) chrome/120.0 mobile safari/537.36")
	for _, ua := range uas {
		u, o, d := p.Parse(ua)
		if want := ref.ParseUserAgent(ua); u != *want {
			t.Errorf("Parse(%q) user agent = %+v; uap-go says %+v", ua, u, *want)
		}
		if want := ref.ParseOs(ua); o != *want {
			t.Errorf("Parse(%q) OS = %+v; uap-go says %+v", ua, o, *want)
		}
		if want := ref.ParseDevice(ua); d != *want {
			t.Errorf("Parse(%q) device = %+v; uap-go says %+v", ua, d, *want)
		}
	}
	t.Logf("%d user agents compared", len(uas))
}
