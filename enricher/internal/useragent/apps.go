package useragent

import "strings"

// The apps table names in-app browsers and vendor browsers that uap-go's
// regular expressions, older than ua-parser's current ones, read as the
// engine they are built on ("Chrome", "Chrome Mobile WebView", "Mobile
// Safari UI/WKWebView", "Other"). Each row is a product's own token, written
// from what that product sends; family names are ua-parser's where
// ua-parser names the product. Rows are tried in order, before the general
// rules below them, and only when uap-go's answer is one of the generic
// families: a client uap-go already names keeps its name.
//
// Nothing here runs on the fast tier's path: it answers only for user agents
// made of mainstream tokens, which no row matches (TestAppRulesSpareMainstream).

// appRule is one product: token, where it is matched, and the family.
type appRule struct {
	// token is matched case-sensitively at a token start (the string's
	// start or after a space, '(' or ';').
	token string
	// family is the name given. With nameNext it is a prefix to which
	// the word following the token is appended ("Valve Steam Client" →
	// "Steam Client").
	family   string
	nameNext bool
	// atEnd accepts the token only as the user agent's last word, for
	// bare words too common to trust elsewhere.
	atEnd bool
}

// apps are the products, grouped by kind. Versions are read from the digits
// after the token ("MicroMessenger/8.0.49" → 8.0, "Instagram 415.0.0" → 415.0).
var apps = []appRule{
	// Messaging and social apps' in-app browsers (Android WebView or
	// iOS WKWebView with the app's token appended).
	{token: "MicroMessenger/", family: "WeChat Browser"}, // Tencent WeChat, all platforms
	{token: "Weibo (", family: "Weibo"},                  // Sina Weibo: "Weibo (<device>__weibo__<version>__...)"
	{token: "Telegram-Android/", family: "Telegram"},
	{token: "Instagram ", family: "Instagram"}, // "Instagram 415.0.0.36.76 Android (...)", also as the whole UA
	{token: "KAKAOTALK", family: "KakaoTalk"},  // "KAKAOTALK/10.2.3 (INAPP)", iOS "KAKAOTALK 10.2.3"
	{token: "musical_ly_", family: "TikTok"},   // TikTok's internal app name, "musical_ly_2022704050"
	{token: "trill_", family: "TikTok"},        // TikTok's Asian build, "trill_2022704050"
	{token: "RobloxApp/", family: "Roblox App"},
	{token: "AncestryAndroid/", family: "AncestryAndroid"}, // Ancestry's Android app
	{token: "Roadrunner/", family: "Roadrunner"},           // Spectrum's Roadrunner mail app

	// Vendor and regional browsers on Chromium or WebKit.
	{token: "HonorBrowser/", family: "Honor Browser"},   // Honor phones and PCs
	{token: "HeyTapBrowser/", family: "HeyTap Browser"}, // OPPO/OnePlus/realme
	{token: "360SE", family: "360 Secure Browser"},      // Qihoo 360, "QIHU 360SE", "360SEi18n"
	{token: "UCMobile/", family: "UC Browser"},          // UC Browser's Chromium builds
	{token: "PHX/", family: "Phoenix Browser"},          // Transsion (Tecno, Infinix, itel)
	{token: "SberBrowser/", family: "Sber Browser"},
	{token: "SLBrowser/", family: "Smart Lenovo Browser"},
	{token: "JiSu/", family: "JiSu Browser"},
	{token: "HIBrowser/", family: "HiBrowser"},
	{token: "CravingExplorer/", family: "Craving Explorer Browser"},
	{token: "Hola/", family: "Hola Browser"},
	{token: "AOLShield/", family: "AOL Shield Browser"},
	{token: "ADG/", family: "AOL Desktop Gold Browser"},
	{token: "OpenWave/", family: "Open Wave"},
	{token: "Sparrow", family: "Sparrow Browser", atEnd: true},
	{token: "YaSearchApp/", family: "Yandex Browser"}, // Yandex's search app, as ua-parser names its YaSearchBrowser
	{token: "OPX/", family: "Opera GX"},               // Opera GX for phones
	{token: "OPT/", family: "Opera Touch"},            // Opera Touch for phones
	{token: "(Brave)", family: "Brave"},               // Brave for iOS's WebKit UA
	{token: "Ladybird/", family: "Ladybird"},
	{token: "Wolvic/", family: "Wolvic Browser"}, // Igalia's XR browser
	{token: "Mypal/", family: "Mypal Browser"},   // Firefox fork for old Windows
	{token: "Camoufox", family: "Camoufox"},      // Firefox build for scraping, names itself in rv: and Firefox/

	// Embedded engines and applications that host a browser.
	{token: "QtWebEngine/", family: "Qt Web Engine"},
	{token: "OBS/", family: "OBS Studio"},                     // OBS Studio's browser source (CEF)
	{token: "AdobeCEP/", family: "Adobe CEP"},                 // Adobe Creative Cloud extension panels
	{token: "Valve Steam ", family: "Steam ", nameNext: true}, // "Valve Steam Client", "Valve Steam GameOverlay"
	{token: "RuxitSynthetic/", family: "Ruxit Synthetic"},     // Dynatrace synthetic monitor

	// TV platforms.
	{token: "OMI/", family: "Vewd Browser"},        // Vewd (formerly Opera TV) core
	{token: "NetCast", family: "NetCast Smart TV"}, // LG NetCast TVs
}

// genericFamilies are the families uap-go gives a client it knows only by
// its engine; the apps table may name such a client better.
var genericFamilies = map[string]bool{
	"": true, "Chrome": true, "Chrome Mobile": true, "Chrome Mobile WebView": true,
	"Mobile Safari": true, "Mobile Safari UI/WKWebView": true, "Safari": true,
	"Firefox": true, "Firefox Mobile": true, "Android": true,
}

// engineTokens are the product tokens of the engines and of mainstream
// browsers' user agents: never an app's name.
var engineTokens = map[string]bool{
	"Mozilla": true, "AppleWebKit": true, "Chrome": true, "Safari": true, "Version": true,
	"Mobile": true, "Gecko": true, "Firefox": true, "KHTML": true, "like": true,
	"CriOS": true, "FxiOS": true, "Chromium": true, "HeadlessChrome": true,
}

// appFamily names the app or vendor browser in ua, given uap-go's family,
// or reports false. It runs the table, then two general rules:
//
//   - An embedder's token on a Chromium user agent: the last "Name/1.2"
//     token outside parentheses that is not an engine's names the app
//     ("... Chrome/131.0.0.0 Safari/537.36 Avira/131.0.0.0" → Avira).
//     Embedders append their own token last, after the ones of the
//     frameworks they use (CEF, game overlays).
//   - "(compatible; Name/1.0; ...)", the convention of crawlers and tools,
//     names Name when uap-go knows nothing of it.
//
// Two broader rules were tried and dropped because ua-parser does not
// follow them: naming iOS WKWebView apps by their last token (it keeps
// "AppleNews/608.0.1" and "ManagedBrowser/..." as Mobile Safari
// UI/WKWebView), and naming any unknown "Name/1.0" user agent Name (it
// keeps those as Other).
func appFamily(ua, family string) (name, version string, ok bool) {
	if !genericFamilies[family] {
		return "", "", false
	}
	for i := range apps {
		a := &apps[i]
		at := tokenIndex(ua, a.token)
		if at < 0 {
			continue
		}
		rest := ua[at+len(a.token):]
		if a.atEnd && strings.TrimSpace(rest) != "" {
			continue
		}
		if strings.HasSuffix(a.token, " ") && !a.nameNext && (rest == "" || rest[0] < '0' || rest[0] > '9') {
			// "Instagram " must be followed by the app's version.
			continue
		}
		name = a.family
		if a.nameNext {
			word := rest[:wordEnd(rest)]
			if word == "" {
				continue
			}
			name += word
			rest = rest[len(word):]
		}
		return name, leadingVersion(rest), true
	}
	switch family {
	case "Chrome", "Chrome Mobile", "Chrome Mobile WebView":
		return lastAppToken(ua)
	case "":
		if _, after, found := strings.Cut(ua, "(compatible; "); found {
			if i := strings.IndexAny(after, "/ ;)"); i > 0 && after[i] == '/' && isName(after[:i]) {
				return after[:i], leadingVersion(after[i+1:]), true
			}
		}
	}
	return "", "", false
}

// tokenIndex is the index of token in ua where it starts a token, or -1.
func tokenIndex(ua, token string) int {
	for from := 0; ; {
		i := strings.Index(ua[from:], token)
		if i < 0 {
			return -1
		}
		i += from
		if i == 0 || strings.IndexByte(" (;", ua[i-1]) >= 0 || token[0] == '(' {
			return i
		}
		from = i + 1
	}
}

// lastAppToken is the last "Name/<digit>..." token outside parentheses
// whose Name is not an engine's.
func lastAppToken(ua string) (name, version string, ok bool) {
	depth := 0
	for i := 0; i < len(ua); {
		switch c := ua[i]; {
		case c == '(':
			depth++
			i++
			continue
		case c == ')':
			if depth > 0 {
				depth--
			}
			i++
			continue
		case c == ' ' || depth > 0:
			i++
			continue
		}
		end := i
		for end < len(ua) && ua[end] != ' ' && ua[end] != '(' {
			end++
		}
		tok := ua[i:end]
		i = end
		n, v, found := strings.Cut(tok, "/")
		if !found || v == "" || v[0] < '0' || v[0] > '9' || !isName(n) || engineTokens[n] || !productName(n) {
			continue
		}
		name, version, ok = n, leadingVersion(v), true
	}
	return name, version, ok
}

// notProducts are words that stand before a version in user agents
// without naming a product: release dates, version-control revisions.
var notProducts = map[string]bool{
	"Release": true, "SVN": true, "Build": true, "Rev": true, "Revision": true, "Profile": true,
	"Configuration": true, "Language": true, "NetType": true, "Device": true, "Model": true, "Engine": true,
}

// productName reports whether n can name the embedder: not a word of
// notProducts and not a short upper-case mark (Yandex's "SA/3", Baidu's
// "T7/11.20").
func productName(n string) bool {
	if notProducts[n] || len(n) < 3 {
		return false
	}
	return len(n) > 3 || strings.ToUpper(n) != n
}

// isName reports whether s looks like a product name: a letter, then
// letters, digits, '-', '_' or '.'.
func isName(s string) bool {
	if len(s) < 2 || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// wordEnd is the length of the letters and digits at the start of s.
func wordEnd(s string) int {
	i := 0
	for i < len(s) && (isLetter(s[i]) || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	return i
}

// leadingVersion is major.minor of the version at the start of s, after
// an optional '/' or space: "/8.0.49(0x...)" → "8.0", " 415.0.0.36" → "415.0".
func leadingVersion(s string) string {
	s = strings.TrimLeft(s, "/ ")
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		end++
	}
	return majorMinor(strings.Trim(s[:end], "."))
}
