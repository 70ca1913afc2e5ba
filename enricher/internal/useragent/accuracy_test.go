package useragent

import (
	"hash/fnv"
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uamix"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Accuracy targets of issue 4 on the uap-core corpora. The corpora are
// newer than the regular expressions that uap-go ships (it misses clients
// added since, such as Opera GX's "OPX" token); the apps table (apps.go)
// names most of those. Each floor is the figure reached (98.38%, 98.76%,
// 99.24%), rounded down, so that none can fall unnoticed; the issue's
// targets are 97%, 97% and 95%. docs/bench/enricher.md has the figures.
//
// The apps table was written looking only at the misses of one half of
// the browser corpus (heldOut false); minHeldOutBrowserFamily is the floor
// of the other half (96.73%), the honest estimate on clients not seen.
const (
	minBrowserFamily        = 0.98
	minHeldOutBrowserFamily = 0.965
	minOSFamily             = 0.985
	minHeldOutOSFamily      = 0.98 // issue 21's target
	minDeviceClass          = 0.99
)

// heldOut splits the corpus in two by a hash of the user agent: the
// apps table's rules were written from the misses of the other half.
func heldOut(ua string) bool {
	h := fnv.New32a()
	h.Write([]byte(ua))
	return h.Sum32()%2 == 1
}

func share(ok, n int) float64 { return float64(ok) / float64(n) }

func TestAccuracyAgainstUAPCore(t *testing.T) {
	p, err := New(1 << 14)
	if err != nil {
		t.Fatal(err)
	}
	ok, n := 0, 0
	heldOK, heldN := 0, 0
	for _, c := range loadUAP(t, "test_ua.yaml") {
		n++
		got := p.ParseUncached(c.UA).Browser
		if got == "" {
			got = "Other"
		}
		if heldOut(c.UA) {
			heldN++
			if got == c.Family {
				heldOK++
			}
		}
		if got == c.Family {
			ok++
		}
	}
	t.Logf("browser family: %d/%d = %.2f%%", ok, n, 100*share(ok, n))
	if share(ok, n) < minBrowserFamily {
		t.Errorf("browser family agreement %.4f; want at least %.3f", share(ok, n), minBrowserFamily)
	}
	t.Logf("browser family, held-out half: %d/%d = %.2f%%", heldOK, heldN, 100*share(heldOK, heldN))
	if share(heldOK, heldN) < minHeldOutBrowserFamily {
		t.Errorf("held-out browser family agreement %.4f; want at least %.3f", share(heldOK, heldN), minHeldOutBrowserFamily)
	}

	ok, n = 0, 0
	heldOK, heldN = 0, 0
	for _, c := range loadUAP(t, "test_os.yaml") {
		n++
		got := p.ParseUncached(c.UA).OS
		if got == "" {
			got = "Other"
		}
		if got == c.Family {
			ok++
		}
		if heldOut(c.UA) {
			heldN++
			if got == c.Family {
				heldOK++
			}
		}
	}
	t.Logf("OS family: %d/%d = %.2f%%; held-out half %d/%d = %.2f%%", ok, n, 100*share(ok, n), heldOK, heldN, 100*share(heldOK, heldN))
	if share(heldOK, heldN) < minHeldOutOSFamily {
		t.Errorf("held-out OS family agreement %.4f; want at least %.3f", share(heldOK, heldN), minHeldOutOSFamily)
	}
	if share(ok, n) < minOSFamily {
		t.Errorf("OS family agreement %.4f; want at least %.3f", share(ok, n), minOSFamily)
	}

	// uap-core names device models, not classes; where the family names a
	// class without doubt, ours must agree.
	ok, n = 0, 0
	for _, c := range loadUAP(t, "test_device.yaml") {
		var want aluminiv1.DeviceType
		switch c.Family {
		case "Spider":
			want = aluminiv1.DeviceType_DEVICE_TYPE_BOT
		case "iPad":
			want = aluminiv1.DeviceType_DEVICE_TYPE_TABLET
		case "iPhone", "iPod":
			want = aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
		case "Mac":
			want = aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
		default:
			continue
		}
		n++
		if got := p.ParseUncached(c.UA).Device; got == want {
			ok++
		} else if testing.Verbose() && n-ok < 20 {
			t.Logf("device %q = %v; want %v", c.UA, got, want)
		}
	}
	t.Logf("device class (Spider/iPad/iPhone/iPod/Mac cases): %d/%d = %.2f%%", ok, n, 100*share(ok, n))
	if share(ok, n) < minDeviceClass {
		t.Errorf("device class agreement %.4f; want at least %.2f", share(ok, n), minDeviceClass)
	}
}

// mainstream are families of ordinary browsers people use; none of their
// corpus cases may be flagged as a bot.
var mainstream = map[string]bool{
	"Chrome": true, "Chrome Mobile": true, "Chrome Mobile iOS": true, "Firefox": true, "Firefox Mobile": true,
	"Firefox iOS": true, "Safari": true, "Mobile Safari": true, "Edge": true, "Edge Mobile": true,
	"Samsung Internet": true, "Opera": true, "Opera Mobile": true, "Yandex Browser": true, "Vivaldi": true,
	"Brave": true, "UC Browser": true, "IE": true,
}

func TestNoOrdinaryBrowserIsABot(t *testing.T) {
	p, err := New(1 << 14)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range loadUAP(t, "test_ua.yaml") {
		if !mainstream[c.Family] {
			continue
		}
		if _, _, d := p.slow.Parse(c.UA); d.Family == "Spider" {
			// A crawler that names a browser ("Google Web Preview"
			// on Chrome 27): uap-core itself calls it a spider.
			continue
		}
		n++
		if r := p.ParseUncached(c.UA); r.Bot {
			t.Errorf("Parse(%q) = bot; want the %s browser", c.UA, c.Family)
		}
	}
	t.Logf("%d ordinary-browser cases checked", n)
}

// TestFastTierAgreesWithUAP checks the trie tier against uap-go on every
// corpus user agent it answers for.
func TestFastTierAgreesWithUAP(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	cases := append(loadUAP(t, "test_ua.yaml"), loadUAP(t, "test_os.yaml")...)
	for _, ua := range uamix.Realistic {
		cases = append(cases, uapCase{UA: ua})
	}
	for _, c := range loadIntoli(t) {
		cases = append(cases, uapCase{UA: c.UA})
	}
	for _, ua := range uamix.Realistic {
		if _, ok := p.parseFast(ua); !ok {
			t.Errorf("the fast tier does not answer for the common %q", ua)
		}
	}
	answered := 0
	for _, c := range cases {
		fast, ok := p.parseFast(c.UA)
		if !ok {
			continue
		}
		answered++
		slow := p.parseSlow(c.UA)
		if fast.Browser != slow.Browser || fast.OS != slow.OS || fast.Device != slow.Device || fast.BrowserVersion != slow.BrowserVersion || fast.OSVersion != slow.OSVersion {
			t.Errorf("fast tier on %q = %+v; uap-go says %+v", c.UA, fast, slow)
		}
	}
	t.Logf("fast tier answered %d of %d cases", answered, len(cases))
}

// TestAppRulesKeepWhatUAPGetsRight checks that the apps table renames no
// corpus client that uap-go alone names as uap-core does.
func TestAppRulesKeepWhatUAPGetsRight(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loadUAP(t, "test_ua.yaml") {
		if u, _, _ := p.slow.Parse(c.UA); u.Family != c.Family {
			continue
		}
		got := p.ParseUncached(c.UA).Browser
		if got == "" {
			got = "Other"
		}
		if got != c.Family {
			t.Errorf("Parse(%q).Browser = %q; uap-go and uap-core say %q", c.UA, got, c.Family)
		}
	}
}
