package bots

import (
	"strings"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"
)

// The generic rules: the words and shapes by which crawlers, monitors,
// scanners and scripts name themselves beyond the crawler list. One
// case-insensitive Aho-Corasick pass finds the words; a few need a look
// at their neighbours.
var (
	// genericWords mean a bot wherever they occur.
	genericWords = []string{
		"crawl", "spider", "scrape", "scanner", "http://", "https://", "+http", "www.",
		"googleother", "monitor", "uptime", "pingdom", "statuscake", "site24x7", "synthetic",
		"healthcheck", "health-check", "probe/", "nmap", "masscan", "zgrab", "nuclei", "sqlmap",
		"nikto", "censys", "netcraft", "wpscan", "httpx", "fetcher", "preview", "validator", "checker",
	}
	// boundedWords need a look around; see boundedHit.
	boundedWords = []string{"bot", "google-", "-agent", ".com", "scan/", "@"}
	// clients are HTTP libraries and tools, when they start the user
	// agent ("python-requests/2.31", "curl/8.4").
	clients = []string{
		"curl", "wget", "python", "java", "go-http-client", "axios", "node-fetch", "undici", "libwww",
		"lwp", "php", "ruby", "perl", "apache-httpclient", "guzzle", "postman", "insomnia", "httpie",
		"aiohttp", "scrapy", "reqwest", "rest-client", "dart",
	}
)

type genericMatcher struct {
	ac ahocorasick.AhoCorasick
	// unbounded is the number of words, first in the automaton, that
	// mean a bot wherever they occur (genericWords and headless).
	unbounded int
}

func newGenericMatcher() genericMatcher {
	b := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
		AsciiCaseInsensitive: true,
		MatchKind:            ahocorasick.StandardMatch,
		DFA:                  true,
	})
	words := append(append([]string(nil), genericWords...), headless...)
	return genericMatcher{ac: b.Build(append(words, boundedWords...)), unbounded: len(words)}
}

// match reports whether ua names itself a bot by the generic rules or
// shows a headless browser's sign.
func (g genericMatcher) match(ua string) bool {
	ac := g.ac
	iter := ac.IterOverlapping(ua)
	for m := iter.Next(); m != nil; m = iter.Next() {
		i := m.Pattern()
		if i < g.unbounded || boundedHit(ua, boundedWords[i-g.unbounded], m.Start(), m.End()) {
			return true
		}
	}
	for _, c := range clients {
		if len(ua) >= len(c) && strings.EqualFold(ua[:len(c)], c) && (len(ua) == len(c) || !isLetter(ua[len(c)])) {
			return true
		}
	}
	return bareToken(ua)
}

// boundedHit checks a bounded word found at ua[start:end]: "bot" as a
// name's end or a word ("Googlebot", "bot/1.0"; not "Bottle"), Google's
// service agents ("Google-Site-Verification"), "-agent" ending a name,
// ".com" ending a host, "scan/" starting a token, and an e-mail address.
func boundedHit(ua, word string, start, end int) bool {
	before, after := byte(' '), byte(' ')
	if start > 0 {
		before = ua[start-1]
	}
	if end < len(ua) {
		after = ua[end]
	}
	switch word {
	case "bot":
		return isLetter(before) || !isLetter(after)
	case "google-":
		return !isLetter(before) && isLetter(after)
	case "-agent", ".com":
		return !isLetter(after)
	case "scan/":
		return !isLetter(before)
	case "@":
		// user@host.tld, not "android@150.0".
		dot := strings.IndexByte(ua[end:], '.')
		return isLetter(after) && dot > 0 && end+dot+1 < len(ua) && isLetter(ua[end+dot+1])
	}
	return false
}

// bareToken reports whether ua is one "name/1.0" token, the name without
// digits ("recon-engine/0.1"): no browser sends that, and handsets' own
// clients put a model number there ("SAMSUNG-GT-P5110/101.40202").
func bareToken(ua string) bool {
	name, version, ok := strings.Cut(ua, "/")
	if !ok || name == "" || version == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLetter(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	if version[0] == 'v' || version[0] == 'V' {
		version = version[1:]
	}
	if version == "" || version[0] < '0' || version[0] > '9' {
		return false
	}
	for i := 0; i < len(version); i++ {
		if c := version[i]; !isLetter(c) && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
