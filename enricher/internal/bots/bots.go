// Package bots tells crawlers, monitors and headless browsers from people,
// by the crawler-user-agents list (MIT, embedded), generic signs (bot, crawler,
// URLs, monitors, scanners, HTTP libraries) and headless-browser signs.
package bots

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// crawlersJSON is crawler-user-agents.json of the npm package
// crawler-user-agents 1.60.0 (github.com/monperrus/crawler-user-agents),
// MIT licence in data/crawler-user-agents.LICENSE. Refresh it with
// `npm pack crawler-user-agents` and copy the file over.
//
//go:embed data/crawler-user-agents.json
var crawlersJSON []byte

// headless are signs of automated browsers that the crawler list does not
// carry because they also run real people's tests; on a site's traffic they
// are not people either.
var headless = []string{"HeadlessChrome", "Headless", "PhantomJS", "Puppeteer", "Playwright", "Selenium", "webdriver", "Electron/", "SlimerJS", "Chrome-Lighthouse", "Lighthouse"}

type pattern struct {
	// literal occurs in every user agent the pattern matches (or, for an
	// alternation, the literal of one branch): a cheap pre-filter before the
	// regular expression runs.
	literal string
	re      *regexp.Regexp
}

// Detector flags bot user agents; safe for concurrent use.
type Detector struct {
	patterns []pattern
	// byTrigram indexes patterns by the first three bytes of their literal,
	// so one pass over the user agent finds the few candidates instead of
	// testing 1,500 literals one by one.
	byTrigram map[uint32][]int
	// always are patterns without a usable literal; they always run.
	always  []int
	generic genericMatcher
}

// Crawler is one entry of the embedded list.
type Crawler struct {
	Pattern   string   `json:"pattern"`
	Instances []string `json:"instances"`
}

// Crawlers returns the embedded list (for tests and documentation).
func Crawlers() ([]Crawler, error) {
	var list []Crawler
	if err := json.Unmarshal(crawlersJSON, &list); err != nil {
		return nil, fmt.Errorf("parsing crawler list: %w", err)
	}
	return list, nil
}

// New compiles the embedded list.
func New() (*Detector, error) {
	list, err := Crawlers()
	if err != nil {
		return nil, err
	}
	return newDetector(list)
}

// newDetector compiles list (the tests build one from part of it).
func newDetector(list []Crawler) (*Detector, error) {
	d := &Detector{generic: newGenericMatcher()}
	for _, c := range list {
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return nil, fmt.Errorf("crawler pattern %q: %w", c.Pattern, err)
		}
		for _, lit := range literals(c.Pattern) {
			d.patterns = append(d.patterns, pattern{literal: lit, re: re})
		}
	}
	d.byTrigram = map[uint32][]int{}
	for i, p := range d.patterns {
		if len(p.literal) < 3 {
			d.always = append(d.always, i)
			continue
		}
		k := trigram(p.literal)
		d.byTrigram[k] = append(d.byTrigram[k], i)
	}
	return d, nil
}

// IsBot reports whether ua belongs to a crawler or an automated browser. An
// empty user agent counts as a bot: every browser sends one.
func (d *Detector) IsBot(ua string) bool {
	if strings.TrimSpace(ua) == "" {
		return true
	}
	masked, listed := listView(ua)
	if d.generic.match(masked) {
		return true
	}
	return d.listed(listed)
}

// InApp reports whether ua is a browser's or WebView's user agent whose
// only sign of a crawler is in its app tokens or device fields (an in-app
// browser, a phone named like a crawler): what the crawler list would
// flag there, IsBot does not.
func (d *Detector) InApp(ua string) bool {
	masked, listed := listView(ua)
	return listed != ua && !d.generic.match(masked) && !d.listed(listed)
}

// listed reports whether a pattern of the crawler list matches s.
func (d *Detector) listed(ua string) bool {
	for _, i := range d.always {
		if d.patterns[i].re.MatchString(ua) {
			return true
		}
	}
	for at := 0; at+3 <= len(ua); at++ {
		for _, i := range d.byTrigram[trigram(ua[at:])] {
			p := d.patterns[i]
			if strings.HasPrefix(ua[at:], p.literal) && p.re.MatchString(ua) {
				return true
			}
		}
	}
	return false
}

func trigram(s string) uint32 { return uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2]) }

// IsHeadlessBrand reports whether a Sec-CH-UA brand list names a headless
// browser (HeadlessChrome sends "HeadlessChrome" there).
func IsHeadlessBrand(secCHUA string) bool {
	return strings.Contains(secCHUA, "Headless")
}

// literals are strings one of which every match of expr contains: the
// longest literal of expr, or of each branch of a top-level alternation.
// {""} when there is none (case-folding, say), and then the regexp always runs.
func literals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return []string{""}
	}
	re = re.Simplify()
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpAlternate {
		return []string{longestLiteral(re)}
	}
	var out []string
	for _, branch := range re.Sub {
		lit := longestLiteral(branch)
		if lit == "" {
			return []string{""}
		}
		out = append(out, lit)
	}
	return out
}

// longestLiteral is the longest literal part of a concatenation in re.
func longestLiteral(re *syntax.Regexp) string {
	var best string
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			if r.Flags&syntax.FoldCase == 0 && len(r.Rune) > len([]rune(best)) {
				best = string(r.Rune)
			}
		case syntax.OpConcat, syntax.OpCapture:
			for _, s := range r.Sub {
				walk(s)
			}
		case syntax.OpPlus:
			walk(r.Sub[0])
		}
	}
	walk(re)
	return best
}

// Named reports whether a name (a client family) says bot, crawler,
// spider, monitor or the like, by the generic rules.
func (d *Detector) Named(family string) bool { return d.generic.match(family) }
