package query

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Dimension is what a report can be broken down or filtered by.
type Dimension struct {
	name string
	// prop is the custom property key of a "prop:<key>" dimension.
	prop string
}

// dimensionDef says how a dimension reads from a row of events.
type dimensionDef struct {
	// expr is the column expression; empty for the session dimensions
	// (entry and exit page), which are computed per session.
	expr string
	// onlyType restricts the rows to one event type ("pageview" rows for
	// pages, "custom" rows for event names).
	onlyType string
	// session is "argMin" (entry page) or "argMax" (exit page).
	session string
}

var dimensions = map[string]dimensionDef{
	"page":            {expr: "path", onlyType: "pageview"},
	"entry_page":      {session: "argMin"},
	"exit_page":       {session: "argMax"},
	"hostname":        {expr: "hostname"},
	"source":          {expr: "referrer_source"},
	"referrer":        {expr: "referrer"},
	"medium":          {expr: "referrer_medium"},
	"search_term":     {expr: "search_term"},
	"utm_source":      {expr: "utm_source"},
	"utm_medium":      {expr: "utm_medium"},
	"utm_campaign":    {expr: "utm_campaign"},
	"utm_term":        {expr: "utm_term"},
	"utm_content":     {expr: "utm_content"},
	"browser":         {expr: "browser"},
	"browser_version": {expr: "concat(browser, ' ', browser_version)"},
	"os":              {expr: "os"},
	"os_version":      {expr: "concat(os, ' ', os_version)"},
	"device":          {expr: "toString(device_type)"},
	"country":         {expr: "country"},
	"region":          {expr: "region"},
	"city":            {expr: "city"},
	"event_name":      {expr: "name", onlyType: "custom"},
}

// propPrefix starts a custom property dimension: "prop:plan".
const propPrefix = "prop:"

// maxValueLen bounds one filter value or property key: longer ones cannot
// match anything a collector stores, and refusing them keeps queries small.
const maxValueLen = 2048

// DimensionNames lists the dimension names, for documentation and errors.
func DimensionNames() []string {
	names := make([]string, 0, len(dimensions)+1)
	for n := range dimensions {
		names = append(names, n)
	}
	sort.Strings(names)
	return append(names, propPrefix+"<key>")
}

// ParseDimension reads a dimension name: one of DimensionNames, or
// "prop:<key>" for a custom property.
func ParseDimension(s string) (Dimension, error) {
	if key, ok := strings.CutPrefix(s, propPrefix); ok {
		if key == "" || len(key) > maxValueLen || !utf8.ValidString(key) {
			return Dimension{}, fmt.Errorf("%w: property key must be 1-%d bytes of UTF-8", ErrBadParam, maxValueLen)
		}
		return Dimension{name: "prop", prop: key}, nil
	}
	if _, ok := dimensions[s]; !ok {
		return Dimension{}, fmt.Errorf("%w: unknown dimension %q; want one of %s", ErrBadParam, truncate(s), strings.Join(DimensionNames(), ", "))
	}
	return Dimension{name: s}, nil
}

// String is the dimension's name as the API spells it.
func (d Dimension) String() string {
	if d.name == "prop" {
		return propPrefix + d.prop
	}
	return d.name
}

func (d Dimension) def() dimensionDef {
	if d.name == "prop" {
		return dimensionDef{}
	}
	return dimensions[d.name]
}

// isSession reports whether the dimension is a property of the visit.
func (d Dimension) isSession() bool { return d.def().session != "" }

// value writes the row expression of a row-level dimension.
func (d Dimension) value(b *stmt) {
	if d.name == "prop" {
		// prop_values[indexOf(...)] is '' when the key is missing; rows
		// without the key are excluded by rowCondition instead.
		b.sql("prop_values[indexOf(prop_keys, ").bind(d.prop).sql(")]")
		return
	}
	b.sql(d.def().expr)
}

// rowCondition writes the restriction a row-level dimension puts on the
// rows it reads, or nothing.
func (d Dimension) rowCondition(b *stmt) {
	switch {
	case d.name == "prop":
		b.sql(" AND has(prop_keys, ").bind(d.prop).sql(")")
	case d.def().onlyType != "":
		b.sql(" AND type = '" + d.def().onlyType + "'")
	}
}

// Op is a filter operator.
type Op string

// Filter operators.
const (
	OpIs       Op = "is"
	OpIsNot    Op = "is_not"
	OpContains Op = "contains"
	OpIn       Op = "in"
	// OpMatches tests a regular expression (RE2, as ClickHouse's match).
	OpMatches Op = "matches"
)

// maxInValues bounds the values of one "in" filter.
const maxInValues = 100

// Filter restricts a report to the rows (or visits, for entry and exit
// pages) whose dimension matches.
type Filter struct {
	Dim    Dimension
	Op     Op
	Values []string
}

// NewFilter checks a filter: one value for is, is_not and contains, 1-100
// for in.
func NewFilter(d Dimension, op Op, values []string) (Filter, error) {
	switch op {
	case OpIs, OpIsNot, OpContains, OpMatches:
		if len(values) != 1 {
			return Filter{}, fmt.Errorf("%w: filter %s %s takes one value", ErrBadParam, d, op)
		}
	case OpIn:
		if len(values) < 1 || len(values) > maxInValues {
			return Filter{}, fmt.Errorf("%w: filter %s in takes 1-%d values", ErrBadParam, d, maxInValues)
		}
	default:
		return Filter{}, fmt.Errorf("%w: unknown filter operator %q; want is, is_not, contains, matches or in", ErrBadParam, truncate(string(op)))
	}
	if op == OpMatches {
		// ClickHouse's match is RE2, as Go's regexp: what compiles here
		// compiles there, and a bad pattern is the caller's 400.
		if _, err := regexp.Compile(values[0]); err != nil {
			return Filter{}, fmt.Errorf("%w: filter %s matches: %q is not a regular expression (RE2 syntax)", ErrBadParam, d, truncate(values[0]))
		}
	}
	for _, v := range values {
		if len(v) > maxValueLen || !utf8.ValidString(v) {
			return Filter{}, fmt.Errorf("%w: filter values must be at most %d bytes of UTF-8", ErrBadParam, maxValueLen)
		}
	}
	return Filter{Dim: d, Op: op, Values: values}, nil
}

// match writes "<lhs> <op> <values>" with every value bound.
func (f Filter) match(b *stmt, lhs func(*stmt)) {
	switch f.Op {
	case OpIs, OpIsNot:
		lhs(b)
		if f.Op == OpIs {
			b.sql(" = ")
		} else {
			b.sql(" != ")
		}
		b.bind(f.Values[0])
	case OpContains:
		b.sql("positionCaseInsensitiveUTF8(")
		lhs(b)
		b.sql(", ").bind(f.Values[0]).sql(") > 0")
	case OpMatches:
		b.sql("match(")
		lhs(b)
		b.sql(", ").bind(f.Values[0]).sql(")")
	case OpIn:
		lhs(b)
		b.sql(" IN (")
		bindEach(b, f.Values).sql(")")
	}
}

// write writes the filter's condition. Row dimensions test the row; a
// property filter also needs the key to be present (except for is_not,
// which keeps rows without the property); entry and exit page filters keep
// the visits whose first or last page view matches, found by a subquery
// with the same scope and range.
func (f Filter) write(b *stmt, s Scope, p Params) error {
	def := f.Dim.def()
	switch {
	case def.session != "":
		// GLOBAL: on a cluster a visit's events are on several shards (they
		// are sharded by event), so the visits are found over all of them,
		// once, by the reporter's node.
		b.sql("session_id GLOBAL IN (SELECT session_id ")
		b.from(s, &p.Range, p.IncludeBots)
		b.sql(" AND type = 'pageview' GROUP BY session_id HAVING ")
		f.match(b, func(b *stmt) { b.sql(def.session + "(path, timestamp)") })
		b.sql(")")
	case f.Dim.name == "prop" && f.Op != OpIsNot:
		b.sql("(has(prop_keys, ").bind(f.Dim.prop).sql(") AND ")
		f.match(b, f.Dim.value)
		b.sql(")")
	case def.onlyType == "custom" && f.Op != OpIsNot:
		// An event name belongs to custom events only; a page filter, by
		// contrast, keeps the custom events sent from that page.
		b.sql("(type = 'custom' AND ")
		f.match(b, f.Dim.value)
		b.sql(")")
	default:
		b.sql("(")
		f.match(b, f.Dim.value)
		b.sql(")")
	}
	return nil
}

// truncate shortens a user string quoted back in an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// Condition combines filters with and, or and not (Plausible's filter
// language): a leaf holds one Filter, an inner node its Op ("and", "or",
// "not") over Of (one operand for not).
type Condition struct {
	Filter *Filter
	Op     string
	Of     []Condition
}

// maxConditionDepth bounds the nesting of a condition.
const maxConditionDepth = 8

// write writes the condition, each filter as Filter.write does.
func (c Condition) write(b *stmt, s Scope, p Params, depth int) error {
	if depth > maxConditionDepth {
		return fmt.Errorf("%w: filters nested deeper than %d levels", ErrBadParam, maxConditionDepth)
	}
	if c.Filter != nil {
		return c.Filter.write(b, s, p)
	}
	switch {
	case c.Op == "not" && len(c.Of) == 1:
		b.sql("NOT (")
		if err := c.Of[0].write(b, s, p, depth+1); err != nil {
			return err
		}
		b.sql(")")
		return nil
	case (c.Op == "and" || c.Op == "or") && len(c.Of) > 0:
		b.sql("(")
		for i, o := range c.Of {
			if i > 0 {
				b.sql(" " + strings.ToUpper(c.Op) + " ")
			}
			if err := o.write(b, s, p, depth+1); err != nil {
				return err
			}
		}
		b.sql(")")
		return nil
	}
	return fmt.Errorf("%w: a condition is a filter, not of one condition, or and/or of one or more", ErrBadParam)
}
