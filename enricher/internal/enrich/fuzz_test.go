package enrich

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseCampaign feeds page URLs' query strings, which anyone can put
// in a link. Whatever the input: no panic, every value valid UTF-8, which
// the enriched event's protobuf strings must be, and one of the values
// url.ParseQuery finds for its parameter (parseCampaign reads them in one
// pass instead, takes the first that is not empty, and replaces what is
// not UTF-8).
func FuzzParseCampaign(f *testing.F) {
	for _, s := range []string{
		"utm_source=newsletter&utm_medium=email&utm_campaign=winter%20sale&utm_term=shoes&utm_content=hero",
		"gclid=abc&utm_source=google&utm_source=second", "fbclid=x&utm_term=%ff%fe", "utm_medium=cpc&msclkid=1&utm_campaign=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c := parseCampaign(raw)
		for name, got := range map[string]string{"utm_source": c.source, "utm_medium": c.medium, "utm_campaign": c.name, "utm_term": c.term, "utm_content": c.content} {
			if !utf8.ValidString(got) {
				t.Fatalf("parseCampaign(%q): %s = %q is not valid UTF-8", raw, name, got)
			}
			if !utf8.ValidString(raw) {
				continue // the oracle below keeps invalid bytes as they are
			}
			if q, err := url.ParseQuery(raw); err == nil {
				if got != "" && !slices.ContainsFunc(q[name], func(v string) bool { return strings.ToValidUTF8(v, "\uFFFD") == got }) {
					t.Fatalf("parseCampaign(%q): %s = %q; url.ParseQuery finds %q", raw, name, got, q[name])
				}
			}
		}
	})
}
