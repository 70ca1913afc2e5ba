package useragent

import (
	"testing"
	"unicode/utf8"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// FuzzParse feeds user agents and User-Agent Client Hints as browsers (or
// anyone) send them. Whatever the input: no panic, a known device class,
// the cached answer equal to the uncached one, and output a protobuf
// string field can hold (valid UTF-8) when the input was.
func FuzzParse(f *testing.F) {
	p, err := New(1000)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		`"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`, `"Windows"`, `"15.0.0"`, `"Google Chrome";v="131.0.6778.86"`)
	f.Add("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "", "", "", "")
	f.Add("Googlebot/2.1 (+http://www.google.com/bot.html)", "", "", "", "")
	f.Fuzz(func(t *testing.T, ua, chUA, platform, platformVersion, fullList string) {
		var hints *aluminiv1.ClientHints
		if chUA != "" || platform != "" {
			hints = &aluminiv1.ClientHints{Ua: chUA, UaMobile: "?0", UaPlatform: platform, UaPlatformVersion: platformVersion, UaFullVersionList: fullList}
		}
		r := p.Parse(ua, hints)
		if _, ok := aluminiv1.DeviceType_name[int32(r.Device)]; !ok {
			t.Fatalf("Parse(%q) device %d; want one of DeviceType", ua, r.Device)
		}
		if again := p.Parse(ua, hints); again != r {
			t.Fatalf("Parse(%q) = %+v, then from the cache %+v", ua, r, again)
		}
		if hints == nil {
			if u := p.ParseUncached(ua); u != r {
				t.Fatalf("Parse(%q) = %+v; ParseUncached = %+v", ua, r, u)
			}
		}
		if utf8.ValidString(ua + chUA + platform + platformVersion + fullList) {
			for _, s := range []string{r.Browser, r.BrowserVersion, r.OS, r.OSVersion} {
				if !utf8.ValidString(s) {
					t.Fatalf("Parse(%q, %+v) = %+v: not valid UTF-8, which the enriched event's protobuf strings must be", ua, hints, r)
				}
			}
		}
	})
}
