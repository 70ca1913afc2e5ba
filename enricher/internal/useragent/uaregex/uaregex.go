// Package uaregex runs ua-parser's regular expressions (the set uap-go
// embeds) with uap-go's semantics, but only those that can match: each
// expression's required literal strings are found with regexp/syntax, and
// one Aho-Corasick pass over the user agent tells which expressions are worth
// running. The answer is uap-go's, in a few microseconds instead of hundreds.
package uaregex

import (
	"fmt"
	"math/bits"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"
	"github.com/ua-parser/uap-go/uaparser"
	"go.yaml.in/yaml/v3"
)

// UserAgent, OS and Device are uap-go's answers, field for field.
type (
	UserAgent = uaparser.UserAgent
	OS        = uaparser.Os
	Device    = uaparser.Device
)

// definitions mirrors ua-parser's regexes.yaml.
type definitions struct {
	UA []struct {
		Regex  string `yaml:"regex"`
		Flag   string `yaml:"regex_flag"`
		Family string `yaml:"family_replacement"`
		V1     string `yaml:"v1_replacement"`
		V2     string `yaml:"v2_replacement"`
		V3     string `yaml:"v3_replacement"`
	} `yaml:"user_agent_parsers"`
	OS []struct {
		Regex string `yaml:"regex"`
		Flag  string `yaml:"regex_flag"`
		OS    string `yaml:"os_replacement"`
		V1    string `yaml:"os_v1_replacement"`
		V2    string `yaml:"os_v2_replacement"`
		V3    string `yaml:"os_v3_replacement"`
		V4    string `yaml:"os_v4_replacement"`
	} `yaml:"os_parsers"`
	Device []struct {
		Regex  string `yaml:"regex"`
		Flag   string `yaml:"regex_flag"`
		Device string `yaml:"device_replacement"`
		Brand  string `yaml:"brand_replacement"`
		Model  string `yaml:"model_replacement"`
	} `yaml:"device_parsers"`
}

// rule is one expression with its replacement templates (uap-go's
// defaults filled in).
type rule struct {
	re   *regexp.Regexp
	repl []string
	fast *fast // nil: run re as it is
}

// list is one of the three ordered lists; the first rule whose first
// template expands to something non-empty wins.
type list struct {
	rules []rule
	// always are the bits of rules without a usable literal.
	always []uint64
	// trim trims the expansions (uap-go does for devices).
	trim bool
	id   uint16
}

// Parser answers as uap-go does; safe for concurrent use.
type Parser struct {
	lists [3]list
	ac    ahocorasick.AhoCorasick
	// owners[i] are the rules (list, index, branch) that literal i
	// lets run.
	owners   [][]ref
	literals []string
}

// ref is a rule, and the branch of its cut alternation (-1: none).
type ref struct {
	list, rule uint16
	branch     int16
}

const (
	uaList = iota
	osList
	deviceList
)

// New compiles uap-go's embedded regular expressions.
func New() (*Parser, error) { return NewFromYAML(uaparser.DefinitionYaml) }

// NewFromYAML compiles a regexes.yaml of ua-parser's format.
func NewFromYAML(src []byte) (*Parser, error) {
	var def definitions
	if err := yaml.Unmarshal(src, &def); err != nil {
		return nil, fmt.Errorf("parsing ua-parser regexes: %w", err)
	}
	type source struct {
		expr, flag string
		repl       []string
	}
	var sources [3][]source
	for _, d := range def.UA {
		sources[uaList] = append(sources[uaList], source{d.Regex, d.Flag, defaults([]string{d.Family, d.V1, d.V2, d.V3}, "$1", "$2", "$3", "$4")})
	}
	for _, d := range def.OS {
		sources[osList] = append(sources[osList], source{d.Regex, d.Flag, defaults([]string{d.OS, d.V1, d.V2, d.V3, d.V4}, "$1", "$2", "$3", "$4", "$5")})
	}
	for _, d := range def.Device {
		sources[deviceList] = append(sources[deviceList], source{d.Regex, d.Flag, defaults([]string{d.Device, d.Brand, d.Model}, "$1", "", "$1")})
	}

	p := &Parser{}
	p.lists[deviceList].trim = true
	for l := range p.lists {
		p.lists[l].id = uint16(l)
	}
	literalID := map[string]int{}
	var literals []string
	for l, srcs := range sources {
		p.lists[l].always = make([]uint64, (len(srcs)+63)/64)
		for i, s := range srcs {
			expr := s.expr
			if s.flag != "" {
				expr = "(?" + s.flag + ")" + expr
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				return nil, fmt.Errorf("ua-parser regex %q: %w", expr, err)
			}
			parsed, err := syntax.Parse(expr, syntax.Perl)
			if err != nil {
				return nil, fmt.Errorf("ua-parser regex %q: %w", expr, err)
			}
			f := rewrite(parsed, s.repl)
			p.lists[l].rules = append(p.lists[l].rules, rule{re: re, repl: s.repl, fast: f})
			add := func(lit string, branch int) {
				id, ok := literalID[lit]
				if !ok {
					id = len(literals)
					literalID[lit] = id
					literals = append(literals, lit)
					p.owners = append(p.owners, nil)
				}
				p.owners[id] = append(p.owners[id], ref{uint16(l), uint16(i), int16(branch)})
			}
			if f != nil && f.alt != nil {
				for b, lits := range f.branches {
					for _, lit := range lits {
						add(lit, b)
					}
					// Most user agents name one branch (one bot):
					// those cuts are compiled now, not on first use.
					f.expr(re, []int{b})
				}
				continue
			}
			lits := required(parsed.Simplify())
			if lits == nil {
				p.lists[l].always[i/64] |= 1 << (i % 64)
				continue
			}
			for _, lit := range lits {
				add(lit, -1)
			}
		}
	}
	builder := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
		AsciiCaseInsensitive: true,
		MatchKind:            ahocorasick.StandardMatch,
		DFA:                  true,
	})
	p.ac = builder.Build(literals)
	p.literals = literals
	return p, nil
}

func defaults(repl []string, def ...string) []string {
	for i := range repl {
		if repl[i] == "" {
			repl[i] = def[i]
		}
	}
	return repl
}

// Parse answers all three questions with one pass of the automaton.
func (p *Parser) Parse(ua string) (UserAgent, OS, Device) {
	var cand [3][]uint64
	for l := range p.lists {
		cand[l] = append([]uint64(nil), p.lists[l].always...)
	}
	var branches []ref
	ac := p.ac
	iter := ac.IterOverlapping(ua)
	for m := iter.Next(); m != nil; m = iter.Next() {
		for _, o := range p.owners[m.Pattern()] {
			cand[o.list][o.rule/64] |= 1 << (o.rule % 64)
			if o.branch >= 0 {
				branches = append(branches, o)
			}
		}
	}

	var u UserAgent
	if v, ok := p.lists[uaList].first(ua, cand[uaList], branches); ok {
		u = UserAgent{Family: v[0], Major: v[1], Minor: v[2], Patch: v[3]}
	} else {
		u = UserAgent{Family: "Other", Major: v[1], Minor: v[2], Patch: v[3]}
	}
	var o OS
	if v, ok := p.lists[osList].first(ua, cand[osList], branches); ok {
		o = OS{Family: v[0], Major: v[1], Minor: v[2], Patch: v[3], PatchMinor: v[4]}
	} else {
		o = OS{Family: "Other", Major: v[1], Minor: v[2], Patch: v[3], PatchMinor: v[4]}
	}
	var d Device
	if v, ok := p.lists[deviceList].first(ua, cand[deviceList], branches); ok {
		d = Device{Family: v[0], Brand: v[1], Model: v[2]}
	} else {
		d = Device{Family: "Other", Brand: v[1], Model: v[2]}
	}
	return u, o, d
}

// first runs the candidate rules in order. Like uap-go, a rule that
// matches but names nothing fills the versions and lets later rules try;
// the last such fill stays when no rule names anything.
func (l *list) first(ua string, cand []uint64, branches []ref) (out [5]string, ok bool) {
	for w, word := range cand {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			r := &l.rules[i]
			re := r.re
			if r.fast != nil {
				re = r.fast.expr(r.re, branchesOf(branches, l.id, i))
			}
			m := re.FindStringSubmatchIndex(ua)
			if m == nil || r.fast != nil && r.fast.stripped && !within(ua, m[0], r.fast.window) {
				continue
			}
			for j, t := range r.repl {
				out[j] = string(re.ExpandString(nil, t, ua, m))
				if l.trim {
					out[j] = strings.TrimSpace(out[j])
				}
			}
			if out[0] != "" {
				return out, true
			}
		}
	}
	return out, false
}

// branchesOf are the branches of rule i of list l that the automaton
// found, in order and once each.
func branchesOf(found []ref, l uint16, i int) []int {
	var out []int
	for _, f := range found {
		if f.list == l && int(f.rule) == i && !slices.Contains(out, int(f.branch)) {
			out = append(out, int(f.branch))
		}
	}
	slices.Sort(out)
	return out
}
