package useragent

import (
	"strconv"
	"strings"

	"github.com/aluminiapp/pipeline/enricher/internal/bots"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// applyHints lets User-Agent Client Hints (Sec-CH-UA*) override what the
// UA string said. A bot stays a bot: hints are as easy to send as a UA.
func applyHints(r Result, h *aluminiv1.ClientHints) Result {
	if bots.IsHeadlessBrand(h.Ua) || bots.IsHeadlessBrand(h.UaFullVersionList) {
		r.Device, r.Bot = aluminiv1.DeviceType_DEVICE_TYPE_BOT, true
		return r
	}
	if r.Bot {
		return r
	}
	switch h.UaMobile {
	case "?1":
		r.Device = aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case "?0":
		if r.Device == aluminiv1.DeviceType_DEVICE_TYPE_MOBILE {
			// A phone-class OS that says "not mobile" is a tablet
			// (Android tablets send ?0); a desktop stays a desktop.
			r.Device = aluminiv1.DeviceType_DEVICE_TYPE_TABLET
		}
	}
	platform := unquote(h.UaPlatform)
	platformVersion := unquote(h.UaPlatformVersion)
	switch platform {
	case "":
	case "Windows":
		r.OS = "Windows"
		// Microsoft: platform version 13 and up is Windows 11, 1-10 is 10.
		if major, err := strconv.Atoi(strings.SplitN(platformVersion, ".", 2)[0]); err == nil {
			switch {
			case major >= 13:
				r.OSVersion = "11"
			case major > 0:
				r.OSVersion = "10"
			}
		}
	default:
		r.OS = platform
		switch platform {
		case "macOS":
			r.OS = "Mac OS X"
		case "Chromium OS":
			r.OS = "Chrome OS"
		}
		if platformVersion != "" {
			// Sent only when asked for (Accept-CH); the UA's stays.
			r.OSVersion = majorMinor(platformVersion)
		}
	}
	name, ver, ok := brand(h.UaFullVersionList)
	if ok {
		ver = majorMinor(ver)
	} else {
		name, ver, ok = brand(h.Ua)
	}
	switch {
	case !ok:
	case engineBrands[name] && !genericFamilies[r.Browser]:
		// The brand list names only the engine ("Chromium",
		// "Android WebView"), the UA a browser on it (Opera's
		// "OPR/88"): the UA knows better.
	case strings.HasPrefix(r.Browser, name):
		// "Opera" for what ua-parser calls "Opera Mobile".
		r.BrowserVersion = ver
	default:
		r.Browser, r.BrowserVersion = name, ver
	}
	if r.Browser == "Chrome" && r.OS == "Android" && r.Device == aluminiv1.DeviceType_DEVICE_TYPE_MOBILE {
		r.Browser = "Chrome Mobile" // ua-parser's name, so both sources agree
	}
	return r
}

// brand picks the browser from a brand list such as
// `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`:
// the first brand that is neither the engine nor GREASE.
func brand(list string) (name, version string, ok bool) {
	var engine, engineVersion string
	for item := range strings.SplitSeq(list, ",") {
		n, v, found := strings.Cut(strings.TrimSpace(item), ";v=")
		if !found {
			continue
		}
		n, v = unquote(n), unquote(v)
		switch {
		case strings.Contains(n, "Not") && strings.Contains(n, "Brand"), n == "":
			continue // GREASE, meant to be ignored
		case n == "Chromium" || n == "Android WebView":
			if engine == "" || n == "Android WebView" {
				engine, engineVersion = brandName(n), v
			}
			continue
		}
		return brandName(n), v, true
	}
	if engine != "" {
		return engine, engineVersion, true
	}
	return "", "", false
}

// engineBrands are the brands that name an engine, not a browser.
var engineBrands = map[string]bool{"Chromium": true, "Chrome Mobile WebView": true}

func brandName(n string) string {
	switch n {
	case "Android WebView":
		return "Chrome Mobile WebView" // ua-parser's name
	case "Google Chrome":
		return "Chrome"
	case "Microsoft Edge":
		return "Edge"
	case "Opera GX":
		return "Opera GX"
	}
	return n
}

func unquote(s string) string { return strings.Trim(strings.TrimSpace(s), `"`) }
