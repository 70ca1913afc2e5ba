package bots

import (
	"testing"
)

func TestEveryListedInstanceIsABot(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	list, err := Crawlers()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range list {
		for _, ua := range c.Instances {
			n++
			if !d.IsBot(ua) {
				t.Errorf("IsBot(%q) = false; want true (pattern %q)", ua, c.Pattern)
			}
		}
	}
	if n < 1000 {
		t.Errorf("the list has %d instances; want the full crawler-user-agents list", n)
	}
}

func TestBrowsersAndHeadless(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ua  string
		bot bool
	}{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", false},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", true},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true},
		{"", true},
	} {
		if got := d.IsBot(tc.ua); got != tc.bot {
			t.Errorf("IsBot(%q) = %v; want %v", tc.ua, got, tc.bot)
		}
	}
}

func BenchmarkIsBotBrowser(b *testing.B) {
	d, err := New()
	if err != nil {
		b.Fatal(err)
	}
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	for b.Loop() {
		d.IsBot(ua)
	}
}
