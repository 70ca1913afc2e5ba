package useragent

import (
	"strings"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"
)

// Some clients (proxies, app HTTP stacks, log pipelines) send user agents
// all in lower case: "mozilla/5.0 (linux; android 9; ...)". ua-parser's
// expressions are case-sensitive, so such a user agent would name nothing.
// Before parsing, the tokens every mainstream user agent is made of get
// their usual spelling back; the rest (model numbers, app names) stays as
// sent.
var canonicalTokens = []string{
	"Mozilla", "Linux", "Android", "AppleWebKit", "KHTML, like Gecko", "Gecko", "Chrome", "Chromium",
	"Mobile Safari", "Safari", "Mobile", "Version", "Windows NT", "Windows Phone", "Windows", "Win64",
	"WOW64", "Macintosh", "Intel Mac OS X", "like Mac OS X", "iPhone OS", "CPU OS", "CPU", "iPhone",
	"iPad", "iPod", "Firefox", "Edg", "EdgA", "EdgiOS", "OPR", "YaBrowser", "SamsungBrowser", "CriOS",
	"FxiOS", "Build", "X11", "Ubuntu", "CrOS", "Opera", "Trident", "MSIE", "UCBrowser", "Tablet",
	"MiuiBrowser", "HuaweiBrowser", "Instagram", "FBAN", "FBAV", "Dalvik", "CFNetwork", "Darwin",
}

// caseRestorer puts canonicalTokens back in their spelling.
type caseRestorer struct {
	tokens ahocorasick.AhoCorasick
}

func newCaseRestorer() caseRestorer {
	b := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
		AsciiCaseInsensitive: true,
		MatchKind:            ahocorasick.LeftMostLongestMatch,
		DFA:                  true,
	})
	return caseRestorer{tokens: b.Build(canonicalTokens)}
}

// restore returns ua with its mainstream tokens spelled as usual when ua
// is all lower case, and ua unchanged otherwise.
func (c caseRestorer) restore(ua string) string {
	if !allLower(ua) {
		return ua
	}
	out := []byte(ua)
	ac := c.tokens
	iter := ac.Iter(ua)
	for m := iter.Next(); m != nil; m = iter.Next() {
		copy(out[m.Start():m.End()], canonicalTokens[m.Pattern()])
	}
	return string(out)
}

// allLower reports whether ua has letters and none of them upper case.
func allLower(ua string) bool {
	letters := false
	for i := 0; i < len(ua); i++ {
		switch c := ua[i]; {
		case c >= 'A' && c <= 'Z':
			return false
		case c >= 'a' && c <= 'z':
			letters = true
		}
	}
	return letters && strings.Contains(ua, "/")
}
