package uaregex

import (
	"regexp/syntax"
	"slices"
	"testing"
)

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string // nil: the expression must always run
	}{
		// A class of a few characters is spelled out.
		{`(Googlebot)/(\d+)`, digits("googlebot/")},
		{`(?i)(Opera Mini)`, []string{"opera mini"}},
		{`(Chrome|CriOS)/(\d+)`, append(digits("chrome/"), digits("crios/")...)},
		// A run of literals goes on into the factored alternation.
		{`[;:] {0,2}(L-\d+[A-Z]|LGL\d+[A-Z]?) Build`, []string{"l-0", "l-1", "l-2", "l-3", "l-4", "l-5", "l-6", "l-7", "l-8", "l-9", "lgl0", "lgl1", "lgl2", "lgl3", "lgl4", "lgl5", "lgl6", "lgl7", "lgl8", "lgl9"}},
		// Of two usable sets, the one not in everyday user agents.
		{`Mozilla.{1,200}Android.{1,200}(GSA)/(\d+)`, digits("gsa/")},
		{`; {0,2}([A-Z]{2,4})`, nil},
		{`^(\w+)/(\d+)$`, digits("/")},
		{`^(\w+)$`, nil},
	} {
		re, err := syntax.Parse(c.expr, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		got := required(re.Simplify())
		slices.Sort(got)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("required(%q) = %q; want %q", c.expr, got, want)
		}
	}
}

// digits is prefix followed by each digit.
func digits(prefix string) []string {
	var out []string
	for d := '0'; d <= '9'; d++ {
		out = append(out, prefix+string(d))
	}
	return out
}
