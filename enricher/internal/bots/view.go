package bots

import "strings"

// The crawler list's patterns are names, and some names are also those of
// phones ("Butterfly", "Sonic"), of Android builds ("AP3A.240617.008", a
// current OPPO/OnePlus/realme build) or of apps whose in-app browsers
// people use ("WhatsApp", "Sogou"). listView is the part of a user agent
// where a listed name means a crawler: without the device fields of an
// Android platform comment (model and build, free text chosen by phone
// makers), and, on a browser's user agent, without the app tokens that
// follow the engine's (an in-app browser's host or a browser's own
// name) of phones' and tablets' user agents. Crawlers that borrow a browser's user agent announce themselves
// with words the generic rules catch (bot, crawler, a URL, "compatible").
//
// masked is ua with only the device fields blanked, what the generic
// rules read; listed is what the crawler list reads.
func listView(ua string) (masked, listed string) {
	if !mobilePlatform(ua) {
		// Desktop user agents keep everything: no Android comment
		// to mask, no in-app browsers to spare.
		return ua, ua
	}
	var sb strings.Builder
	sb.Grow(len(ua))
	rest := ua
	browser := strings.HasPrefix(ua, "Mozilla/5.0 (") && !strings.HasPrefix(ua, "Mozilla/5.0 (compatible")
	engineOnly := browser
	cut := -1
	for rest != "" {
		if rest[0] == '(' {
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				end = len(rest) - 1
			}
			comment := rest[:end+1]
			if strings.Contains(comment, "compatible") {
				engineOnly = false
			}
			if sb.Len() <= len("Mozilla/5.0 ") && !mobilePlatform(comment) {
				// Desktop: in-app browsers live on phones, and
				// desktop tools append their names here.
				engineOnly = false
			}
			sb.WriteString(maskAndroid(comment))
			rest = rest[end+1:]
			continue
		}
		end := strings.IndexAny(rest, " (")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			sb.WriteByte(rest[0])
			rest = rest[1:]
			continue
		}
		tok := rest[:end]
		name, _, _ := strings.Cut(tok, "/")
		if engineOnly && cut < 0 && !engineToken[name] && !strings.HasPrefix(tok, "Mobile/") {
			// The first token past the engine's: the rest is the
			// app's or the browser's own.
			cut = sb.Len()
		}
		sb.WriteString(tok)
		rest = rest[end:]
	}
	masked = sb.String()
	if cut >= 0 && engineOnly {
		return masked, masked[:cut]
	}
	return masked, masked
}

func mobilePlatform(comment string) bool {
	return strings.Contains(comment, "Android") || strings.Contains(comment, "iPhone") ||
		strings.Contains(comment, "iPad") || strings.Contains(comment, "iPod")
}

// engineToken are the product tokens of browser engines and of the
// mainstream browsers' user agents.
var engineToken = map[string]bool{
	"Mozilla": true, "AppleWebKit": true, "Chrome": true, "Safari": true, "Version": true, "Mobile": true,
	"Gecko": true, "Firefox": true, "like": true, "KHTML,": true,
}

// maskAndroid blanks the model and build fields of an Android platform
// comment: "(Linux; Android 14; CPH2581 Build/AP3A.240617.008)" becomes
// "(Linux; Android 14; ; )".
func maskAndroid(comment string) string {
	if !strings.Contains(comment, "Android") {
		return comment
	}
	fields := strings.Split(comment[1:len(comment)-1], ";")
	afterAndroid := false
	for i, f := range fields {
		t := strings.TrimSpace(f)
		switch {
		case strings.HasPrefix(t, "Android"):
			afterAndroid = true
		case strings.Contains(t, "Build/"), afterAndroid && !locale(t) && t != "wv" && t != "U":
			fields[i] = " "
			afterAndroid = false
		}
	}
	return "(" + strings.Join(fields, ";") + ")"
}

// locale reports whether t looks like "en-us", "zh-CN", "de".
func locale(t string) bool {
	if len(t) == 2 {
		return true
	}
	return len(t) == 5 && (t[2] == '-' || t[2] == '_')
}
