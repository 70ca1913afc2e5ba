package uaregex

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Two rewrites make the expressions that dominate uap-go's time cheap,
// each keeping the answer exactly (TestSameAsUAPGo checks it on every
// corpus user agent):
//
//   - A leading "^.{0,N}?" (or "^.*?") is dropped: the lazy prefix makes
//     the match the one that starts leftmost, which is what an unanchored
//     search finds anyway, so only "starts within N characters" is left
//     to check. A greedy "^.{0,N}" prefers the rightmost start instead, so
//     it is dropped only where the templates use no group and whether
//     the expression matches is all that counts. Go's engine runs such a
//     prefix as up to N threads per byte: most of uap-go's cost.
//   - A large alternation every match passes through ("(Googlebot|
//     bingbot|...)", hundreds of names) is cut down to the branches whose
//     literals occur in the user agent. A branch whose required strings
//     are absent cannot match anywhere, so leaving it out changes no
//     match; the cut expressions are compiled once per set of branches.

// minBranches is the size from which an alternation is cut per input.
const minBranches = 8

// maxCut bounds the compiled cut expressions kept per rule, so that a
// stream of made-up user agents cannot grow memory without end.
const maxCut = 512

// fast is the rewritten form of one rule.
type fast struct {
	// root is the expression, without its "^.{0,N}" prefix when
	// stripped is set.
	root     *syntax.Regexp
	stripped bool
	window   int // N; -1 for unbounded
	// alt is the alternation to cut, inside body (or the whole tree).
	alt      *syntax.Regexp
	branches [][]string // required literals of each branch of alt
	cut      sync.Map   // branch set key → *regexp.Regexp
	cutCount atomic.Int64
}

// rewrite works out the fast form of tree (parsed, not simplified), or nil.
func rewrite(tree *syntax.Regexp, templates []string) *fast {
	f := &fast{root: tree, window: -1}
	if body, n, lazy, ok := stripPrefix(tree); ok && (lazy || !usesGroups(templates)) {
		f.root, f.stripped, f.window = body, true, n
	}
	if alt := requiredAlternation(f.root); alt != nil {
		for _, b := range alt.Sub {
			lits := required(simplify(b))
			if lits == nil {
				f.branches = nil
				break
			}
			f.branches = append(f.branches, lits)
		}
		if f.branches != nil {
			f.alt = alt
		}
	}
	if !f.stripped && f.alt == nil {
		return nil
	}
	return f
}

// stripPrefix splits "^.{0,N}X", "^.{0,N}?X", "^.*?X" into X.
func stripPrefix(re *syntax.Regexp) (body *syntax.Regexp, n int, lazy, ok bool) {
	for re.Op == syntax.OpConcat && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpConcat || len(re.Sub) < 3 || re.Sub[0].Op != syntax.OpBeginText {
		return nil, 0, false, false
	}
	p := re.Sub[1]
	switch {
	case p.Op == syntax.OpRepeat && p.Min == 0 && p.Max >= 0 && p.Sub[0].Op == syntax.OpAnyCharNotNL:
		n = p.Max
	case p.Op == syntax.OpStar && p.Sub[0].Op == syntax.OpAnyCharNotNL:
		n = -1
	default:
		return nil, 0, false, false
	}
	rest := &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: re.Sub[2:]}
	return rest, n, p.Flags&syntax.NonGreedy != 0, true
}

// usesGroups reports whether any template refers to a group.
func usesGroups(templates []string) bool {
	for _, t := range templates {
		if strings.Contains(t, "$") {
			return true
		}
	}
	return false
}

// requiredAlternation is the first alternation of minBranches or more
// on the path every match takes (through concatenations and groups).
func requiredAlternation(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpAlternate:
		if len(re.Sub) >= minBranches {
			return re
		}
	case syntax.OpCapture:
		return requiredAlternation(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if a := requiredAlternation(s); a != nil {
				return a
			}
		}
	}
	return nil
}

func simplify(re *syntax.Regexp) *syntax.Regexp { return re.Simplify() }

// replace copies the nodes of root on the way to target, with target
// swapped for with.
func replace(root, target, with *syntax.Regexp) *syntax.Regexp {
	if root == target {
		return with
	}
	var subs []*syntax.Regexp
	changed := false
	for _, s := range root.Sub {
		r := replace(s, target, with)
		changed = changed || r != s
		subs = append(subs, r)
	}
	if !changed {
		return root
	}
	c := *root
	c.Sub = subs
	return &c
}

// expr is the compiled expression to run for the given branches of alt
// (nil: all of them).
func (f *fast) expr(full *regexp.Regexp, branches []int) *regexp.Regexp {
	if f.alt == nil || branches == nil || len(branches) == len(f.alt.Sub) {
		if !f.stripped {
			return full
		}
		if re, ok := f.cut.Load(""); ok {
			return re.(*regexp.Regexp)
		}
		return f.compile("", f.root, full)
	}
	key := make([]byte, 0, 2*len(branches))
	for _, b := range branches {
		key = append(key, byte(b>>8), byte(b))
	}
	if re, ok := f.cut.Load(string(key)); ok {
		return re.(*regexp.Regexp)
	}
	alt := &syntax.Regexp{Op: syntax.OpAlternate, Flags: f.alt.Flags}
	for _, b := range branches {
		alt.Sub = append(alt.Sub, f.alt.Sub[b])
	}
	return f.compile(string(key), replace(f.root, f.alt, alt), full)
}

func (f *fast) compile(key string, tree *syntax.Regexp, full *regexp.Regexp) *regexp.Regexp {
	re, err := regexp.Compile(tree.String())
	if err != nil {
		return full // cannot happen for a tree parsed from a valid expression
	}
	if f.cutCount.Add(1) <= maxCut {
		f.cut.Store(key, re)
	}
	return re
}

// within reports whether a match starting at byte start is one the
// stripped prefix allowed: at most window characters, none a newline.
func within(ua string, start, window int) bool {
	if strings.IndexByte(ua[:start], '\n') >= 0 {
		return false
	}
	return window < 0 || start <= window || utf8.RuneCountInString(ua[:start]) <= window
}
