package uaregex

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Limits of the literal analysis: beyond them a part of a regular
// expression counts as "anything", which only makes the prefilter let
// more through, never less.
const (
	maxExact   = 32 // strings in a finite language worth expanding
	minLiteral = 2  // shorter required strings say too little to filter on
)

// required returns lower-cased strings one of which occurs, ASCII case
// folded, in every string re matches; nil when no such set is known and
// the expression must always run.
func required(re *syntax.Regexp) []string {
	set := need(re)
	if set == nil || minLen(set) < minLiteral {
		return nil
	}
	return dedupe(set)
}

// need is required without the length floor.
func need(re *syntax.Regexp) []string {
	if set, ok := exact(re); ok {
		return nonEmpty(set)
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return need(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return need(re.Sub[0])
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set := need(sub)
			if set == nil {
				return nil
			}
			out = append(out, set...)
		}
		return out
	case syntax.OpConcat:
		return needConcat(re.Sub)
	}
	return nil
}

// common is the text of everyday user agents: a required string found
// in it would let its expression run on most traffic.
var common = strings.ToLower(strings.Join([]string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; U; Android 4.4.2; en-us; SM-T530 Build/KOT49H) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
	"Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
}, "\n"))

// needConcat picks, among the runs of finite parts (expanded into every
// string they can spell) and the other parts' own sets, the most
// selective filter: the set with fewest strings found in everyday user
// agents, then the one whose shortest string is longest.
func needConcat(subs []*syntax.Regexp) []string {
	var best []string
	consider := func(set []string) {
		set = nonEmpty(set)
		if set == nil || minLen(set) < minLiteral {
			return
		}
		if best == nil || commonness(set) < commonness(best) ||
			commonness(set) == commonness(best) && minLen(set) > minLen(best) {
			best = set
		}
	}
	run := []string{""}
	for _, sub := range subs {
		if set, ok := exact(sub); ok {
			if joined, ok := cross(run, set); ok {
				run = joined
				continue
			}
			consider(run)
			run = set
			continue
		}
		// The run goes on into the part's leading strings: "L"
		// before "(?:-\d+|GL\d+)" (the parser factors alternations
		// so) requires "l-" or "lgl".
		if pre, ok := prefixes(sub); ok {
			if joined, ok := cross(run, pre); ok {
				consider(joined)
			}
		}
		consider(run)
		run = []string{""}
		consider(need(sub))
	}
	consider(run)
	return best
}

// prefixes returns strings one of which every match of re starts with
// (lower-cased), or false; "" in the set means no start is known.
func prefixes(re *syntax.Regexp) ([]string, bool) {
	if set, ok := exact(re); ok {
		return set, true
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return prefixes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return prefixes(re.Sub[0])
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := prefixes(sub)
			if !ok {
				return nil, false
			}
			out = append(out, set...)
		}
		if len(out) > maxExact {
			return nil, false
		}
		return dedupe(out), true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := prefixes(sub)
			if !ok {
				return out, true
			}
			joined, ok := cross(out, set)
			if !ok {
				return out, true // what is known so far still starts every match
			}
			out = joined
			if _, whole := exact(sub); !whole {
				return out, true
			}
		}
		return out, true
	}
	return []string{""}, true
}

// exact returns the whole (small, finite) language of re, lower-cased.
func exact(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}, true
	case syntax.OpLiteral:
		s := string(re.Rune)
		if !ascii(s) {
			return nil, false
		}
		return []string{strings.ToLower(s)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if r >= utf8.RuneSelf || len(out) > maxExact {
					return nil, false
				}
				out = append(out, strings.ToLower(string(r)))
			}
		}
		return dedupe(out), true
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpQuest:
		set, ok := exact(re.Sub[0])
		if !ok {
			return nil, false
		}
		return append(set, ""), true
	case syntax.OpRepeat:
		if re.Min != re.Max || re.Min > 4 {
			return nil, false
		}
		out := []string{""}
		set, ok := exact(re.Sub[0])
		for range re.Min {
			if !ok {
				return nil, false
			}
			if out, ok = cross(out, set); !ok {
				return nil, false
			}
		}
		return out, true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := exact(sub)
			if !ok {
				return nil, false
			}
			out = append(out, set...)
		}
		if len(out) > maxExact {
			return nil, false
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := exact(sub)
			if !ok {
				return nil, false
			}
			if out, ok = cross(out, set); !ok {
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}

// cross is every a+b, or false when there would be too many.
func cross(as, bs []string) ([]string, bool) {
	if len(as)*len(bs) > maxExact {
		return nil, false
	}
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return dedupe(out), true
}

// nonEmpty is set, or nil when it holds the empty string (which every
// string contains, so it filters nothing).
func nonEmpty(set []string) []string {
	for _, s := range set {
		if s == "" {
			return nil
		}
	}
	return set
}

// commonness is how many strings of set everyday user agents contain.
func commonness(set []string) int {
	n := 0
	for _, s := range set {
		if strings.Contains(common, s) {
			n++
		}
	}
	return n
}

func minLen(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

func dedupe(set []string) []string {
	seen := make(map[string]bool, len(set))
	out := set[:0:0]
	for _, s := range set {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
