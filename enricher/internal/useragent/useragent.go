// Package useragent learns browser, operating system, device class and bot
// status from a User-Agent string and, where sent, User-Agent Client Hints.
//
// Parsing runs in two tiers behind an LRU cache keyed by the UA string: a
// trie parser (medama-io/go-useragent, well under a microsecond) answers for
// user agents made only of the tokens of the mainstream browsers, which is
// most real traffic; everything else goes to uap-go with the ua-parser
// project's regular expressions, which knows thousands of rarer clients but
// costs hundreds of microseconds, then to our apps table (apps.go) for the
// in-app and vendor browsers those regular expressions predate. Family names
// follow ua-parser's, so both tiers name a browser alike.
package useragent

import (
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
	return &Parser{fast: medama.NewParser(), slow: slow, bots: d, cache: cache, stats: counter}, nil
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
		r = p.parseSlow(ua)
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
	r.Device = deviceClass(ua, device.Family, r.OS)
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

// deviceClass maps uap-core's device family and OS to our coarse classes.
func deviceClass(ua, family, os string) aluminiv1.DeviceType {
	switch {
	case family == "Spider":
		return aluminiv1.DeviceType_DEVICE_TYPE_BOT
	case strings.Contains(family, "iPad") || strings.Contains(family, "Tablet") || strings.Contains(family, "Kindle"):
		return aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case os == "Android" && !strings.Contains(ua, "Mobile"):
		// Android phones' browsers say "Mobile"; tablets' do not
		// (Google's guidance to browser makers).
		return aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case mobileOS[os] || strings.Contains(ua, "Mobile") || strings.Contains(ua, "Mobi"):
		return aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case desktopOS[os] || strings.HasPrefix(os, "Windows"):
		return aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	}
	return aluminiv1.DeviceType_DEVICE_TYPE_OTHER
}
