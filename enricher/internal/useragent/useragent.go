// Package useragent learns browser, operating system, device class and bot
// status from a User-Agent string and, where sent, User-Agent Client Hints.
//
// Parsing runs in two tiers behind an LRU cache keyed by the UA string: a
// trie parser (medama-io/go-useragent, well under a microsecond) answers for
// user agents made only of the tokens of the mainstream browsers, which is
// most real traffic; everything else goes to the ua-parser project's
// regular expressions (the set uap-go embeds), which know thousands of
// rarer clients, run through a literal prefilter (package uaregex) that
// gives uap-go's answer in microseconds instead of hundreds, then to our
// apps table (apps.go) for the in-app and vendor browsers those regular
// expressions predate. Family names follow ua-parser's, so both tiers name
// a browser alike.
package useragent

import (
	"strconv"
	"strings"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
	medama "github.com/medama-io/go-useragent"

	"github.com/aluminiapp/pipeline/enricher/internal/bots"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uaregex"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Result is what a user agent tells.
type Result struct {
	Browser        string
	BrowserVersion string
	OS             string
	OSVersion      string
	Device         aluminiv1.DeviceType
	Bot            bool
}

// Parser parses user agents; safe for concurrent use.
type Parser struct {
	fast  *medama.Parser
	slow  *uaregex.Parser
	bots  *bots.Detector
	cache *otter.Cache[string, Result]
	stats *stats.Counter
	cases caseRestorer
}

// New returns a Parser whose cache holds up to cacheSize user agents.
func New(cacheSize int) (*Parser, error) {
	d, err := bots.New()
	if err != nil {
		return nil, err
	}
	slow, err := uaregex.New()
	if err != nil {
		return nil, err
	}
	counter := stats.NewCounter()
	cache, err := otter.New(&otter.Options[string, Result]{MaximumSize: cacheSize, StatsRecorder: counter})
	if err != nil {
		return nil, err
	}
	return &Parser{fast: medama.NewParser(), slow: slow, bots: d, cache: cache, stats: counter, cases: newCaseRestorer()}, nil
}

// Parse returns what ua and the client hints (nil when none were sent) say.
// Client hints win where present: they are not frozen or spoofed the way
// UA strings are (Chrome's UA says "Windows NT 10.0" on Windows 11).
func (p *Parser) Parse(ua string, hints *aluminiv1.ClientHints) Result {
	r, ok := p.cache.GetIfPresent(ua)
	if !ok {
		r = p.ParseUncached(ua)
		p.cache.Set(ua, r)
	}
	if hints != nil {
		r = applyHints(r, hints)
	}
	return r
}

// CacheStats are the cache's hits and misses since start.
func (p *Parser) CacheStats() (hits, misses uint64) {
	s := p.stats.Snapshot()
	return s.Hits, s.Misses
}

// ParseUncached parses ua without the cache.
func (p *Parser) ParseUncached(ua string) Result {
	r, ok := p.parseFast(ua)
	if !ok {
		r = p.parseSlow(p.cases.restore(ua))
	}
	if r.Device != aluminiv1.DeviceType_DEVICE_TYPE_BOT && p.bots.IsBot(ua) {
		r.Device, r.Bot = aluminiv1.DeviceType_DEVICE_TYPE_BOT, true
	}
	return r
}

// ParseSlow parses ua with uap-go and the apps table, bypassing the fast
// tier, the bot list and the cache: the reference the fast tier's tests
// check it with.
func (p *Parser) ParseSlow(ua string) Result { return p.parseSlow(ua) }

func (p *Parser) parseSlow(ua string) Result {
	agent, os, device := p.slow.Parse(ua)
	r := Result{
		Browser:        agent.Family,
		BrowserVersion: version(agent.Major, agent.Minor),
		OS:             os.Family,
		OSVersion:      version(os.Major, os.Minor),
	}
	if r.Browser == "Other" {
		r.Browser = ""
	}
	if name, v, ok := appFamily(ua, r.Browser); ok {
		r.Browser, r.BrowserVersion = name, v
	}
	if r.OS == "Other" {
		r.OS = ""
	}
	if device.Family == "Spider" && p.bots.InApp(ua) && (webView(ua) || !p.bots.Named(agent.Family)) {
		// ua-parser's spider list names apps whose in-app browsers
		// people use (WhatsApp's WebView, Sogou's own browser); a family
		// ua-parser gives a bot ("WebPageTest.org bot") stays a bot.
		device.Family = "Other"
	}
	r.Device = deviceClass(ua, device, r.OS, os.Major)
	if r.Device == aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP && r.OS == "iOS" && strings.Contains(ua, "Darwin/") {
		// CFNetwork apps on a Mac: ua-parser reads the Darwin
		// version as iOS's, but the device is a Mac.
		r.OS, r.OSVersion = "Mac OS X", macOSVersion(ua)
	}
	r.Bot = r.Device == aluminiv1.DeviceType_DEVICE_TYPE_BOT
	return r
}

func version(major, minor string) string {
	switch {
	case major == "":
		return ""
	case minor == "":
		return major
	}
	return major + "." + minor
}

var (
	mobileOS = map[string]bool{
		"iOS": true, "Android": true, "Windows Phone": true, "BlackBerry OS": true, "KaiOS": true,
		"Symbian OS": true, "Firefox OS": true, "HarmonyOS": true, "Tizen": true, "webOS": true,
		"Windows Mobile": true, "Bada": true, "Sailfish": true, "Ubuntu Touch": true,
	}
	desktopOS = map[string]bool{
		"Windows": true, "Mac OS X": true, "Linux": true, "Ubuntu": true, "Chrome OS": true,
		"Fedora": true, "FreeBSD": true, "OpenBSD": true, "NetBSD": true, "Debian": true,
		"Mint": true, "Red Hat": true, "SUSE": true, "Arch Linux": true, "Gentoo": true,
		"Mandriva": true, "Slackware": true, "CentOS": true, "Solaris": true, "Kubuntu": true,
	}
)

// webView reports whether ua is an Android WebView's ("; wv)") or an iOS
// WKWebView's (an iPhone or iPad user agent without Safari's token).
func webView(ua string) bool {
	return strings.Contains(ua, "; wv)") ||
		(strings.Contains(ua, "(iPhone") || strings.Contains(ua, "(iPad")) && !strings.Contains(ua, "Safari/")
}

// deviceClass maps ua-parser's device and OS to our coarse classes. Only
// a browser's user agent says "Mobile" on a phone and leaves it out on a
// tablet; apps and HTTP stacks (Dalvik, okhttp, app tokens) say neither,
// and run on phones far more often than on tablets.
func deviceClass(ua string, d uaregex.Device, os, osMajor string) aluminiv1.DeviceType {
	lower := strings.ToLower(ua)
	switch {
	case d.Family == "Spider":
		return aluminiv1.DeviceType_DEVICE_TYPE_BOT
	case d.Family == "Mac" && os == "iOS" && !strings.Contains(lower, "cfnetwork"):
		// An iOS-only browser (CriOS, EdgiOS) with a Mac's user
		// agent: an iPad asking for desktop sites.
		return aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case d.Family == "Mac" || os == "Mac OS X":
		return aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	case tabletDevice(d) || strings.Contains(lower, "/apad") || strings.Contains(lower, "tablet"):
		// "/apad" is Yandex's app mark for tablets ("YaSearchApp/23.71/apad").
		return aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case strings.Contains(lower, "mobile") || strings.Contains(lower, "mobi") || strings.Contains(lower, "/aphone"):
		return aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case os == "Android" && strings.Contains(lower, "safari/"):
		// A browser or WebView without "Mobile" (Google's guidance
		// to browser makers for tablets).
		return aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case mobileOS[os], os == "Windows" && osMajor == "CE", phoneDevice(d, lower):
		return aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case desktopOS[os] || strings.HasPrefix(os, "Windows"):
		return aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	}
	return aluminiv1.DeviceType_DEVICE_TYPE_OTHER
}

// tabletDevice reports whether ua-parser's device is a tablet by its
// name, or by the maker's model numbering: Samsung's Galaxy Tabs are
// SM-T, SM-P, SM-X and GT-P, Amazon's Fire tablets KF*.
func tabletDevice(d uaregex.Device) bool {
	switch {
	case strings.Contains(d.Family, "iPad"), strings.Contains(d.Family, "Tablet"), strings.Contains(d.Family, "Kindle"),
		strings.Contains(d.Brand, "Tablet"), strings.Contains(d.Model, "Kindle"):
		return true
	case d.Brand == "Samsung":
		m := strings.ToUpper(d.Model)
		return strings.HasPrefix(m, "SM-T") || strings.HasPrefix(m, "SM-P") || strings.HasPrefix(m, "SM-X") || strings.HasPrefix(m, "GT-P")
	case d.Brand == "Amazon":
		return strings.HasPrefix(d.Model, "KF")
	}
	return false
}

// phoneDevice reports whether ua-parser names a handset: a generic phone
// family, a phone maker's model (on no known OS), or a Java ME client.
func phoneDevice(d uaregex.Device, lower string) bool {
	switch d.Family {
	case "Generic Smartphone", "Generic Feature Phone", "iPhone", "iPod", "iOS-Device":
		return true
	case "Other", "Spider", "Mac", "":
	default:
		if d.Brand != "" && d.Brand != "Generic" && !bigScreen(lower) {
			return true
		}
	}
	return strings.Contains(lower, "midp") || strings.Contains(lower, "j2me") || strings.Contains(lower, "cldc")
}

// bigScreen reports whether ua names a TV, console or media box, which
// ua-parser also names by maker and model.
func bigScreen(lower string) bool {
	for _, w := range []string{"tv", "playstation", "xbox", "nintendo", "wii", "roku", "crkey", "netcast", "web0s", "tizen"} {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// macOSVersion is the macOS version of a CFNetwork user agent's Darwin
// kernel: Darwin 20 is macOS 11, 24 is macOS 15; before 20, Darwin N is
// Mac OS X 10.(N-4).
func macOSVersion(ua string) string {
	_, after, ok := strings.Cut(ua, "Darwin/")
	if !ok {
		return ""
	}
	end := 0
	for end < len(after) && after[end] >= '0' && after[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(after[:end])
	switch {
	case err != nil || n < 5:
		return ""
	case n >= 20:
		return strconv.Itoa(n - 9)
	}
	return "10." + strconv.Itoa(n-4)
}
