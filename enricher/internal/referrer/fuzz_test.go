package referrer

import (
	"net/url"
	"testing"
	"unicode/utf8"
)

// FuzzLookup feeds referrer URLs as pages send them (anything a browser or
// a script puts in document.referrer). Whatever the input: no panic, a
// known medium, the same answer from Lookup and LookupURL, and text a
// protobuf string field can hold (valid UTF-8) when the input was.
func FuzzLookup(f *testing.F) {
	p, err := New()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "https://www.google.com/search?q=alumini+analytics", "https://l.facebook.com/l.php?u=x",
		"android-app://com.google.android.gm", "https://yandex.ru/search/?text=%D0%BF", "http://[::1]:80/a?q=%zz"} {
		f.Add(s)
	}
	mediums := map[string]bool{Search: true, Social: true, Email: true, Paid: true, Chatbot: true, Internal: true, Direct: true, Unknown: true}
	f.Fuzz(func(t *testing.T, ref string) {
		a := p.Lookup(ref)
		if !mediums[a.Medium] {
			t.Fatalf("Lookup(%q) medium %q; want one of the package's", ref, a.Medium)
		}
		if (ref == "") != (a.Medium == Direct) {
			t.Fatalf("Lookup(%q) = %+v; want direct exactly for an empty referrer", ref, a)
		}
		if a.Term != "" && a.Medium != Search {
			t.Fatalf("Lookup(%q) = %+v: a search term without the search medium", ref, a)
		}
		if again := p.Lookup(ref); again != a {
			t.Fatalf("Lookup(%q) = %+v, then %+v", ref, a, again)
		}
		if u, err := url.Parse(ref); err == nil && ref != "" {
			if b := p.LookupURL(u); b != a {
				t.Fatalf("LookupURL(%q) = %+v; Lookup gives %+v", ref, b, a)
			}
		}
		if utf8.ValidString(ref) && (!utf8.ValidString(a.Source) || !utf8.ValidString(a.Term)) {
			t.Fatalf("Lookup(%q) = %+v: not valid UTF-8, which the enriched event's protobuf strings must be", ref, a)
		}
	})
}
