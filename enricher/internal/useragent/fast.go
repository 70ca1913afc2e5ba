package useragent

import (
	"strings"

	"github.com/medama-io/go-useragent/agents"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// productTokens are the only tokens, outside parentheses, of the user
// agents the fast tier answers for. Any other token (an in-app browser's
// "Instagram 300.0", "UCMobile/15", "OPX/3.1", a bot's name) sends the user
// agent to uap-go, which knows those clients; the trie parser would see
// plain Chrome or Safari there.
var productTokens = map[string]bool{
	"Mozilla": true, "AppleWebKit": true, "Chrome": true, "Safari": true, "Version": true,
	"Mobile": true, "Gecko": true, "Firefox": true, "Edg": true, "EdgA": true, "EdgiOS": true,
	"CriOS": true, "FxiOS": true, "SamsungBrowser": true,
}

// parseFast answers for mainstream browsers on mainstream systems, or says
// it cannot (false).
func (p *Parser) parseFast(ua string) (Result, bool) {
	comments, ok := mainstreamShape(ua)
	if !ok {
		return Result{}, false
	}
	// iOS browsers other than Safari name themselves in these tokens; on
	// any other system they are spoofs, left to uap-go. "Version/" beside
	// Chrome on Android marks a WebView.
	iosBrowser := strings.Contains(ua, "CriOS/") || strings.Contains(ua, "FxiOS/") || strings.Contains(ua, "EdgiOS/")
	var r Result
	switch {
	case strings.HasPrefix(comments, "Windows NT 10.0; Win64; x64)"), strings.HasPrefix(comments, "Windows NT 10.0; Win64; x64; rv:"):
		// Windows 11 sends 10.0 too; only client hints tell them apart.
		r.OS, r.OSVersion, r.Device = "Windows", "10", aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	case strings.HasPrefix(comments, "Macintosh; Intel Mac OS X "):
		r.OS, r.OSVersion, r.Device = "Mac OS X", dotted(comments[len("Macintosh; Intel Mac OS X "):]), aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	case strings.HasPrefix(comments, "iPhone; CPU iPhone OS "):
		r.OS, r.OSVersion, r.Device = "iOS", dotted(comments[len("iPhone; CPU iPhone OS "):]), aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case strings.HasPrefix(comments, "iPad; CPU OS "):
		r.OS, r.OSVersion, r.Device = "iOS", dotted(comments[len("iPad; CPU OS "):]), aluminiv1.DeviceType_DEVICE_TYPE_TABLET
	case strings.HasPrefix(comments, "Linux; Android "):
		r.OS, r.OSVersion = "Android", dotted(comments[len("Linux; Android "):])
		r.Device = aluminiv1.DeviceType_DEVICE_TYPE_TABLET
		// Old Galaxy Tabs and Kindle Fires say "Mobile" too.
		if strings.Contains(ua, " Mobile") && !tabletModel(comments) {
			r.Device = aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
		}
	case strings.HasPrefix(comments, "Android ") && strings.Contains(comments, "; Mobile; rv:"):
		// Firefox for Android leaves "Linux" out.
		r.OS, r.OSVersion, r.Device = "Android", dotted(comments[len("Android "):]), aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	case strings.HasPrefix(comments, "X11; Linux x86_64)"), strings.HasPrefix(comments, "X11; Linux x86_64; rv:"):
		r.OS, r.Device = "Linux", aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
	default:
		return Result{}, false
	}

	if iosBrowser && (r.OS != "iOS" || strings.Contains(ua, "Version/")) {
		return Result{}, false
	}
	if r.OS == "Android" && strings.Contains(ua, "Version/") {
		return Result{}, false
	}
	m := p.fast.Parse(ua)
	mobile := r.Device == aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
	switch m.Browser() {
	case agents.BrowserChrome:
		switch {
		case strings.Contains(ua, "CriOS/"):
			r.Browser = "Chrome Mobile iOS"
		case r.OS == "Android" && mobile:
			r.Browser = "Chrome Mobile"
		case r.OS == "iOS":
			return Result{}, false
		default:
			r.Browser = "Chrome"
		}
	case agents.BrowserFirefox:
		switch {
		case strings.Contains(ua, "FxiOS/"):
			r.Browser = "Firefox iOS"
		case r.OS == "Android" && mobile:
			r.Browser = "Firefox Mobile"
		case r.OS == "Windows" || r.OS == "Mac OS X" || r.OS == "Linux":
			r.Browser = "Firefox"
		default:
			return Result{}, false
		}
	case agents.BrowserSafari:
		switch {
		case r.OS == "iOS" && strings.Contains(ua, " Safari/") && strings.Contains(ua, "Version/"):
			r.Browser = "Mobile Safari"
		case r.OS == "Mac OS X" && strings.Contains(ua, "Version/"):
			r.Browser = "Safari"
		default:
			return Result{}, false
		}
	case agents.BrowserEdge:
		switch {
		case strings.Contains(ua, "EdgA/") || strings.Contains(ua, "EdgiOS/"):
			r.Browser = "Edge Mobile"
		case strings.Contains(ua, "Edg/"):
			r.Browser = "Edge"
		default:
			return Result{}, false
		}
	case agents.BrowserSamsung:
		r.Browser = "Samsung Internet"
	default:
		return Result{}, false
	}
	r.BrowserVersion = majorMinor(m.BrowserVersion())
	if r.BrowserVersion == "" {
		return Result{}, false
	}
	return r, true
}

// mainstreamShape reports whether ua has only known product tokens and
// returns what its first parenthesised comment says. Comments with a
// WebView mark, "compatible" (old IE, most bots) or a URL fail it.
func mainstreamShape(ua string) (first string, ok bool) {
	rest := ua
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			break
		}
		if rest[0] == '(' {
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return "", false
			}
			c := rest[1:end]
			if strings.Contains(c, "; wv") || strings.Contains(c, "compatible") || strings.Contains(c, "http") ||
				strings.Contains(c, "bot") || strings.Contains(c, "Bot") || strings.Contains(c, "(") {
				return "", false
			}
			switch {
			case first == "":
				first = rest[1:]
			case c != "KHTML, like Gecko":
				// Trailing comments name add-ons and apps
				// ("Ecosia android@119", "Rival IQ").
				return "", false
			}
			rest = rest[end+1:]
			continue
		}
		end := strings.IndexAny(rest, " (")
		if end < 0 {
			end = len(rest)
		}
		tok := rest[:end]
		if slash := strings.IndexByte(tok, '/'); slash >= 0 {
			tok = tok[:slash]
		}
		if !productTokens[tok] {
			return "", false
		}
		rest = rest[end:]
	}
	return first, first != "" && strings.HasPrefix(ua, "Mozilla/5.0 (") && !strings.Contains(ua, "+")
}

// dotted turns the version at the start of s ("10_15_7) ...", "14; K)")
// into major.minor ("10.15", "14").
func dotted(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '_' && r != '.' })
	if end >= 0 {
		s = s[:end]
	}
	return majorMinor(strings.ReplaceAll(s, "_", "."))
}

func majorMinor(v string) string {
	if i := strings.IndexByte(v, '.'); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '.'); j >= 0 {
			return v[:i+1+j]
		}
	}
	return v
}

// tabletModel reports whether an Android comment ("Linux; Android 13;
// SM-X710) ...") names a model of a tablet line whose browsers may still
// say "Mobile": Samsung's SM-T/P/X and GT-P, Amazon's KF*.
func tabletModel(comments string) bool {
	end := strings.IndexByte(comments, ')')
	if end < 0 {
		return false
	}
	for part := range strings.SplitSeq(comments[:end], ";") {
		part = strings.TrimSpace(part)
		for _, prefix := range []string{"SM-T", "SM-P", "SM-X", "GT-P", "KF"} {
			if strings.HasPrefix(part, prefix) {
				return true
			}
		}
	}
	return false
}
