package useragent

import (
	"testing"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// TestKindRules checks one user agent of each kind issue 21 names, each
// against the rule that handles its kind (not a list of strings).
func TestKindRules(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	const (
		mobile  = aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
		tablet  = aluminiv1.DeviceType_DEVICE_TYPE_TABLET
		desktop = aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	)
	for _, c := range []struct {
		ua, browser, os string
		device          aluminiv1.DeviceType
	}{
		// Android apps' HTTP stacks say neither Mobile nor Safari.
		{"Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014)", "", "Android", mobile},
		{"Instagram 5.1.3 Android (19/4.4.2; 480dpi; 1080x1920; samsung; SM-N900; ha3g; universal5420; en_GB)", "", "Android", mobile},
		// A browser without Mobile is still a tablet.
		{"Mozilla/5.0 (Linux; Android 13; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome", "Android", tablet},
		// Yandex's tablet mark.
		{"Mozilla/5.0 (Linux; arm_64; Android 11; 2107113SG) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.111 YaSearchApp/23.71/apad Mobile Safari/537.36", "", "Android", tablet},
		// All lower case.
		{"mozilla/5.0 (linux; android 9; sm-g960f) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 mobile safari/537.36", "Chrome Mobile", "Android", mobile},
		{"mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 safari/537.36", "Chrome", "Windows", desktop},
		// CFNetwork apps: iPhone by default, a Mac when the UA says so.
		{"Podcasts/1.0 CFNetwork/1494.0.7 Darwin/23.4.0", "", "iOS", mobile},
		{"AppName/3 CFNetwork/1240.0.4 Darwin/20.6.0 (x86_64)", "", "Mac OS X", desktop},
		// iPad asking for desktop sites in an iOS-only browser.
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/125 Version/13.0.3 Safari/605.1.15", "", "iOS", tablet},
		// Handhelds of before smartphones.
		{"Mozilla/5.0 (compatible; MSIE 4.01; Windows CE; PPC; 240x320)", "", "Windows", mobile},
		{"Nokia6300/2.0 (05.00) Profile/MIDP-2.0 Configuration/CLDC-1.1", "", "", mobile},
		{"SAMSUNG-GT-P5110/101.40202", "", "", tablet},
		// A console is no phone, though ua-parser names its maker.
		{"Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15", "", "", aluminiv1.DeviceType_DEVICE_TYPE_OTHER},
		// In-app and vendor browsers whose apps ua-parser's spider
		// list names, and phones named like listed crawlers.
		{"Mozilla/5.0 (Linux; Android 13; 23021RAAEG Build/TKQ1.221114.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.193 Mobile Safari/537.36 WhatsApp/2.23.25.76", "", "Android", mobile},
		{"Mozilla/5.0 (Linux; U; Android 7.1.1; zh-cn; OPPO R11 Build/NMF26X) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/53.0.2785.146 Mobile Safari/537.36 SogouMSE,SogouMobileBrowser/5.9.0", "", "Android", mobile},
		{"Mozilla/5.0 (Linux; Android 15; CPH2581 Build/AP3A.240617.008) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.107 Mobile Safari/537.36", "Chrome Mobile", "Android", mobile},
	} {
		r := p.ParseUncached(c.ua)
		if r.Device != c.device || r.OS != c.os || c.browser != "" && r.Browser != c.browser || r.Bot {
			t.Errorf("ParseUncached(%q) = %+v; want device %v, OS %q, browser %q, no bot", c.ua, r, c.device, c.os, c.browser)
		}
	}
}
