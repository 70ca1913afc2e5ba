package useragent

import (
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uamix"
)

// TestAppRules checks the apps table on user agents as the products send
// them (written for this test, not taken from the uap-core corpus).
func TestAppRules(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ua, family, version string }{
		{"Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64", "WeChat Browser", "8.0"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2d) NetType/WIFI Language/zh_CN", "WeChat Browser", "8.0"},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36 Telegram-Android/10.5.0 (Google Pixel 8; Android 14; SDK 34; HIGH)", "Telegram", "10.5"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 KAKAOTALK 10.4.5", "KakaoTalk", "10.4"},
		{"Instagram 320.0.0.34.109 Android (34/14; 420dpi; 1080x2340; Google/google; Pixel 7; panther; panther; en_GB; 567067343)", "Instagram", "320.0"},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) QtWebEngine/6.5.3 Chrome/108.0.5359.220 Safari/537.36", "Qt Web Engine", "6.5"},
		{"Mozilla/5.0 (Windows; U; Windows NT 10.0; en-US; Valve Steam Client/default/1700000000; ) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.183 Safari/537.36", "Steam Client", ""},
		// An embedder's own token, last, names it (general rule).
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 ExampleApp/2.3.4", "ExampleApp", "2.3"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) CEF/120.1.8 Chrome/120.0.0.0 ExampleGame/1.0 Safari/537.36", "ExampleGame", "1.0"},
		// Short marks and release words are not products.
		{"Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 ExampleApp/4.1 SA/3", "ExampleApp", "4.1"},
		{"Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 Release/08.30.2013", "Chrome Mobile", "120.0"},
		// A browser uap-go names keeps its name.
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/116.0.0.0", "Opera", "116.0"},
		// An iOS WebView app's token is left alone, as ua-parser does.
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 ExampleApp/2.3.4", "Mobile Safari UI/WKWebView", ""},
	} {
		r := p.ParseUncached(c.ua)
		if r.Browser != c.family || r.BrowserVersion != c.version {
			t.Errorf("ParseUncached(%q) = %q %q; want %q %q", c.ua, r.Browser, r.BrowserVersion, c.family, c.version)
		}
	}
}

// TestAppRulesSpareMainstream checks that no row or general rule of the
// apps table names a mainstream user agent: those are the fast tier's, and
// the table runs only on the slow path.
func TestAppRulesSpareMainstream(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	for _, ua := range uamix.Realistic {
		fast, _ := p.parseFast(ua)
		if name, _, ok := appFamily(ua, fast.Browser); ok {
			t.Errorf("appFamily(%q, %q) = %q; want no app", ua, fast.Browser, name)
		}
	}
}
