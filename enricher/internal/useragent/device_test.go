package useragent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Device-class targets of issue 21, on held-out halves (heldOut true) of
// two corpora: real browser traffic labelled by its own device category
// (intoli), and uap-core's device cases of the makers whose model numbers
// say phone or tablet.
const (
	minHeldOutDeviceIntoli = 0.97
	minHeldOutDeviceModels = 0.97
)

// intoliCase is one user agent of the npm package user-agents 2.1.198
// (github.com/intoli/user-agents, BSD-2-Clause), real traffic with the
// device category the collecting site saw (desktop, mobile, tablet).
type intoliCase struct {
	UA       string `json:"userAgent"`
	Category string `json:"deviceCategory"`
	Platform string `json:"platform"`
}

func loadIntoli(t testing.TB) []intoliCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "intoli-user-agents", "user-agents.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []intoliCase
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("parsing user-agents.json: %v", err)
	}
	return out
}

var categories = map[string]aluminiv1.DeviceType{
	"desktop": aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP,
	"mobile":  aluminiv1.DeviceType_DEVICE_TYPE_MOBILE,
	"tablet":  aluminiv1.DeviceType_DEVICE_TYPE_TABLET,
}

// modelClass labels a uap-core device case by its maker's public model
// numbering, or reports false: Samsung's SM-T/SM-P/SM-X and GT-P are
// Galaxy Tabs, SM-G/A/N/S/J/M/F/E phones; Apple's iPhone/iPad; Google's
// Nexus 7/9/10 and Pixel C/Tablet tablets, other Nexus and Pixel phones;
// Amazon's Kindle and KF* Fire tablets.
func modelClass(brand, model string) (aluminiv1.DeviceType, bool) {
	tablet, mobile := aluminiv1.DeviceType_DEVICE_TYPE_TABLET, aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	switch {
	case brand == "Samsung" && samsungTab.MatchString(model):
		return tablet, true
	case brand == "Samsung" && samsungPhone.MatchString(model):
		return mobile, true
	case brand == "Apple" && (model == "iPad" || regexp.MustCompile(`^iPad\d`).MatchString(model)):
		return tablet, true
	case brand == "Apple" && (model == "iPhone" || regexp.MustCompile(`^iPhone\d`).MatchString(model)):
		return mobile, true
	case brand == "Google" && googleTab.MatchString(model):
		return tablet, true
	case brand == "Google" && googlePhone.MatchString(model):
		return mobile, true
	case brand == "Amazon" && amazonTab.MatchString(model):
		return tablet, true
	}
	return 0, false
}

var (
	samsungTab   = regexp.MustCompile(`^(?i)(SM-[TPX]\d|GT-P\d)`)
	samsungPhone = regexp.MustCompile(`^(?i)SM-[GANSJMFE]\d`)
	googleTab    = regexp.MustCompile(`^(Nexus (7|9|10)|Pixel (C|Tablet))\b`)
	googlePhone  = regexp.MustCompile(`^(Nexus [456][XP]?|Nexus One|Nexus S|Pixel( \d\w*)?( XL| Pro| a)?)$`)
	amazonTab    = regexp.MustCompile(`^(Kindle|KF[A-Z]{2})`)
)

func TestDeviceClassAccuracy(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	type tally struct{ ok, n, heldOK, heldN int }
	count := func(tl *tally, ua string, got, want aluminiv1.DeviceType) {
		tl.n++
		if got == want {
			tl.ok++
		}
		if heldOut(ua) {
			tl.heldN++
			if got == want {
				tl.heldOK++
			}
		} else if got != want && testing.Verbose() {
			t.Logf("training miss: %q = %v; want %v", ua, got, want)
		}
	}
	var intoli, models tally
	for _, c := range loadIntoli(t) {
		count(&intoli, c.UA, p.ParseUncached(c.UA).Device, categories[c.Category])
	}
	for _, c := range loadUAP(t, "test_device.yaml") {
		if want, ok := modelClass(c.Brand, c.Model); ok {
			count(&models, c.UA, p.ParseUncached(c.UA).Device, want)
		}
	}
	for _, r := range []struct {
		name string
		tl   tally
		min  float64
	}{{"intoli user-agents", intoli, minHeldOutDeviceIntoli}, {"uap-core phone and tablet models", models, minHeldOutDeviceModels}} {
		t.Logf("device class, %s: %d/%d = %.2f%%; held-out half %d/%d = %.2f%%", r.name,
			r.tl.ok, r.tl.n, 100*share(r.tl.ok, r.tl.n), r.tl.heldOK, r.tl.heldN, 100*share(r.tl.heldOK, r.tl.heldN))
		if share(r.tl.heldOK, r.tl.heldN) < r.min {
			t.Errorf("device class on the held-out half of %s: %.4f; want at least %.2f", r.name, share(r.tl.heldOK, r.tl.heldN), r.min)
		}
	}
}
