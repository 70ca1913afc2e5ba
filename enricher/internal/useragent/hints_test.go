package useragent

import (
	"testing"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestClientHintsAndTablets(t *testing.T) {
	p, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	const (
		chromeWin     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		chromeAndroid = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
		androidTablet = "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		// An Android browser unknown to the fast tier, without "Mobile".
		oddTablet = "Mozilla/5.0 (Linux; Android 12; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/77.0.0.0"
	)
	for _, tc := range []struct {
		name  string
		ua    string
		hints *aluminiv1.ClientHints
		want  Result
	}{
		{"Windows 11 only in hints", chromeWin, &aluminiv1.ClientHints{
			Ua: `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`, UaMobile: "?0",
			UaPlatform: `"Windows"`, UaPlatformVersion: `"15.0.0"`, UaFullVersionList: `"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86"`,
		}, Result{Browser: "Chrome", BrowserVersion: "131.0", OS: "Windows", OSVersion: "11", Device: aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP}},
		{"Edge named in hints", chromeWin, &aluminiv1.ClientHints{
			Ua: `"Microsoft Edge";v="131", "Chromium";v="131", "Not_A Brand";v="24"`, UaPlatform: `"Windows"`, UaPlatformVersion: `"10.0.0"`,
		}, Result{Browser: "Edge", BrowserVersion: "131", OS: "Windows", OSVersion: "10", Device: aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP}},
		{"Android phone", chromeAndroid, &aluminiv1.ClientHints{
			Ua: `"Chromium";v="131", "Google Chrome";v="131"`, UaMobile: "?1", UaPlatform: `"Android"`, UaPlatformVersion: `"14.0.0"`,
		}, Result{Browser: "Chrome Mobile", BrowserVersion: "131", OS: "Android", OSVersion: "14.0", Device: aluminiv1.DeviceType_DEVICE_TYPE_MOBILE}},
		{"Android without Mobile is a tablet", androidTablet, nil,
			Result{Browser: "Chrome", BrowserVersion: "131.0", OS: "Android", OSVersion: "13", Device: aluminiv1.DeviceType_DEVICE_TYPE_TABLET}},
		{"Android without Mobile, slow tier", oddTablet, nil,
			Result{Browser: "Opera", BrowserVersion: "77.0", OS: "Android", OSVersion: "12", Device: aluminiv1.DeviceType_DEVICE_TYPE_TABLET}},
		{"engine-only brands leave the UA's browser", oddTablet, &aluminiv1.ClientHints{
			Ua: `"Chromium";v="120", "Not_A Brand";v="24"`, UaMobile: "?0", UaPlatform: `"Android"`, UaPlatformVersion: `"12.0.0"`,
		}, Result{Browser: "Opera", BrowserVersion: "77.0", OS: "Android", OSVersion: "12.0", Device: aluminiv1.DeviceType_DEVICE_TYPE_TABLET}},
		{"Android WebView brand on a plain WebView", "Mozilla/5.0 (Linux; Android 13; SM-A146B; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.0.0 Mobile Safari/537.36", &aluminiv1.ClientHints{
			Ua: `"Android WebView";v="120", "Chromium";v="120", "Not_A Brand";v="24"`, UaMobile: "?1", UaPlatform: `"Android"`,
		}, Result{Browser: "Chrome Mobile WebView", BrowserVersion: "120", OS: "Android", OSVersion: "13", Device: aluminiv1.DeviceType_DEVICE_TYPE_MOBILE}},
		{"headless brand", chromeWin, &aluminiv1.ClientHints{Ua: `"HeadlessChrome";v="131", "Chromium";v="131"`},
			Result{Browser: "Chrome", BrowserVersion: "131.0", OS: "Windows", OSVersion: "10", Device: aluminiv1.DeviceType_DEVICE_TYPE_BOT, Bot: true}},
	} {
		if got := p.Parse(tc.ua, tc.hints); got != tc.want {
			t.Errorf("%s: Parse(%q, %v) = %+v; want %+v", tc.name, tc.ua, tc.hints, got, tc.want)
		}
	}
	if hits, misses := p.CacheStats(); hits == 0 || misses == 0 {
		t.Errorf("CacheStats() = %d hits, %d misses; want both counted", hits, misses)
	}
}
