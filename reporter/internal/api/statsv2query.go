package api

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// Reading a Plausible Stats API v2 query: its range, metrics, dimensions
// and filters, checked against what Alumini answers, into a v2Plan.

// parseV2 checks a query against what Alumini answers.
func parseV2(q v2Query, now time.Time, loc *time.Location, maxRows int) (*v2Plan, error) {
	plan := &v2Plan{q: q, limit: 10000}
	if len(q.Metrics) == 0 {
		return nil, v2Errorf("Invalid query: metrics must not be empty; want some of %s", strings.Join(v2Metrics, ", "))
	}
	for _, m := range q.Metrics {
		if !slices.Contains(v2Metrics, m) {
			return nil, v2Errorf("Unsupported metric `%s`: Alumini answers %s", truncate(m), strings.Join(v2Metrics, ", "))
		}
	}
	for k, v := range q.Include {
		if b, _ := v.(bool); b && k != "total_rows" {
			return nil, v2Errorf("Unsupported include `%s`: Alumini answers include.total_rows only", truncate(k))
		}
	}
	rng, err := parseV2Range(q.DateRange, now, loc)
	if err != nil {
		return nil, err
	}
	plan.params = query.Params{Range: rng, Location: loc}
	where, goal, err := parseV2Filters(q.Filters)
	if err != nil {
		return nil, err
	}
	plan.params.Where, plan.goal = where, goal
	plan.unfiltered = plan.params
	if goal != "" {
		// Counts under a goal are of the goal's events, as Plausible's.
		d, err := query.ParseDimension("event_name")
		if err != nil {
			return nil, err
		}
		f, err := query.NewFilter(d, query.OpIs, []string{goal})
		if err != nil {
			return nil, v2Errorf("Invalid goal filter: %v", err)
		}
		plan.params.Filters = []query.Filter{f}
	}
	switch len(q.Dimensions) {
	case 0:
	case 1:
		plan.dim = q.Dimensions[0]
		if iv, ok := v2Intervals[plan.dim]; ok {
			plan.interval = iv
			if iv == "" {
				plan.interval = autoInterval(rng)
			}
			break
		}
		d, err := v2Dimension(plan.dim)
		if err != nil {
			return nil, err
		}
		plan.breakBy = d
	default:
		return nil, v2Errorf("Unsupported dimensions %q: Alumini breaks a query down by one dimension at a time", strings.Join(q.Dimensions, ", "))
	}
	for _, m := range q.Metrics {
		if err := checkMetric(m, plan); err != nil {
			return nil, err
		}
	}
	if p := q.Pagination; p != nil {
		if p.Limit < 1 || p.Offset < 0 || p.Limit > 10000 {
			return nil, v2Errorf("Invalid pagination: limit must be 1-10000 and offset not negative")
		}
		plan.limit, plan.offset = p.Limit, p.Offset
	}
	if plan.breakBy != (query.Dimension{}) && plan.offset >= maxRows {
		return nil, v2Errorf("Invalid pagination: Alumini breaks down the top %d values; an offset of %d is past them", maxRows, plan.offset)
	}
	for _, o := range q.OrderBy {
		if len(o) != 2 || (o[1] != "asc" && o[1] != "desc") {
			return nil, v2Errorf("Invalid order_by entry %q: want [metric or dimension, \"asc\" or \"desc\"]", truncate(strings.Join(o, ", ")))
		}
		if !slices.Contains(q.Metrics, o[0]) && o[0] != plan.dim {
			return nil, v2Errorf("Invalid order_by entry: %q is neither a metric nor a dimension of the query", truncate(o[0]))
		}
	}
	return plan, nil
}

// checkMetric refuses a metric the query's shape cannot answer.
func checkMetric(m string, plan *v2Plan) error {
	timeDim := plan.interval != ""
	switch m {
	case "bounce_rate", "visit_duration":
		if plan.dim != "" {
			return v2Errorf("Unsupported metric %s with dimension %s: Alumini answers it for the whole range only (no dimensions)", m, plan.dim)
		}
	case "conversion_rate":
		if plan.goal == "" {
			return v2Errorf("Metric `conversion_rate` can only be queried with a goal filter: [\"is\", \"event:goal\", [name]]")
		}
		if plan.dim != "" {
			return v2Errorf("Unsupported metric conversion_rate with dimension %s: Alumini answers it without dimensions", plan.dim)
		}
	case "percentage":
		if plan.dim == "" || timeDim {
			return v2Errorf("Metric `percentage` can only be queried with a dimension other than time")
		}
	}
	return nil
}

func autoInterval(r query.Range) query.Interval {
	switch d := r.To.Sub(r.From); {
	case d <= 48*time.Hour:
		return query.Hour
	case d > 120*24*time.Hour:
		return query.Month
	}
	return query.Day
}

// v2Dimension reads a Plausible dimension: one of v2Dimensions, or
// event:props:<key>.
func v2Dimension(name string) (query.Dimension, error) {
	if key, ok := strings.CutPrefix(name, "event:props:"); ok {
		return query.ParseDimension("prop:" + key)
	}
	ours, ok := v2Dimensions[name]
	if !ok {
		known := make([]string, 0, len(v2Dimensions))
		for k := range v2Dimensions {
			known = append(known, k)
		}
		sort.Strings(known)
		return query.Dimension{}, v2Errorf("Unsupported dimension `%s`: Alumini answers %s, event:props:<key>, time, time:hour, time:day, time:week, time:month", truncate(name), strings.Join(known, ", "))
	}
	return query.ParseDimension(ours)
}

// parseV2Range reads date_range: a preset, or [from, to] as dates
// (inclusive) or ISO 8601 times.
func parseV2Range(raw json.RawMessage, now time.Time, loc *time.Location) (query.Range, error) {
	var preset string
	if err := json.Unmarshal(raw, &preset); err == nil {
		local := now.In(loc)
		y, m, d := local.Date()
		today, tomorrow := time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
		days := map[string]int{"day": 1, "7d": 7, "28d": 28, "30d": 30, "91d": 91}
		switch {
		case days[preset] > 0:
			return query.Range{From: today.AddDate(0, 0, 1-days[preset]), To: tomorrow}, nil
		case preset == "month":
			return query.Range{From: time.Date(y, m, 1, 0, 0, 0, 0, loc), To: time.Date(y, m+1, 1, 0, 0, 0, 0, loc)}, nil
		case preset == "6mo" || preset == "12mo":
			n := map[string]int{"6mo": 5, "12mo": 11}[preset]
			return query.Range{From: time.Date(y, m-time.Month(n), 1, 0, 0, 0, 0, loc), To: time.Date(y, m+1, 1, 0, 0, 0, 0, loc)}, nil
		case preset == "year":
			return query.Range{From: time.Date(y, 1, 1, 0, 0, 0, 0, loc), To: time.Date(y+1, 1, 1, 0, 0, 0, 0, loc)}, nil
		case preset == "all":
			// A report covers at most maxRangeYears (see parseRange).
			return query.Range{From: tomorrow.AddDate(-maxRangeYears, 0, 0), To: tomorrow}, nil
		}
		return query.Range{}, v2Errorf("Invalid date_range %q: want day, 7d, 28d, 30d, 91d, month, 6mo, 12mo, year, all or [from, to]", truncate(preset))
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return query.Range{}, v2Errorf("Invalid date_range: want a preset such as \"7d\" or [\"2026-01-01\", \"2026-01-31\"]")
	}
	from, _, err1 := parseTime(pair[0], loc)
	to, toDate, err2 := parseTime(pair[1], loc)
	if err1 != nil || err2 != nil {
		return query.Range{}, v2Errorf("Invalid date_range %q: want dates (2026-01-31) or ISO 8601 times", truncate(strings.Join(pair, ", ")))
	}
	if toDate {
		to = to.AddDate(0, 0, 1)
	} else {
		to = to.Add(time.Second) // Plausible's end time is inclusive
	}
	switch {
	case !from.Before(to):
		return query.Range{}, v2Errorf("Invalid date_range: %s is not before %s", pair[0], pair[1])
	case to.After(from.AddDate(maxRangeYears, 0, 0)):
		return query.Range{}, v2Errorf("Invalid date_range: a query covers at most %d years", maxRangeYears)
	case from.Before(minTime) || to.After(maxTime):
		return query.Range{}, v2Errorf("Invalid date_range: times must lie between %s and %s", minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	return query.Range{From: from, To: to}, nil
}

// parseV2Filters reads the filters (all of which must hold) into one
// condition; an "is" filter on event:goal names the goal instead.
func parseV2Filters(raw []json.RawMessage) (*query.Condition, string, error) {
	if len(raw) > maxFilters {
		return nil, "", v2Errorf("Invalid filters: at most %d", maxFilters)
	}
	var goal string
	var all []query.Condition
	for _, f := range raw {
		var parts []json.RawMessage
		if err := json.Unmarshal(f, &parts); err == nil && len(parts) == 3 && string(parts[1]) == `"event:goal"` {
			var op string
			var names []string
			if json.Unmarshal(parts[0], &op) != nil || op != "is" || json.Unmarshal(parts[2], &names) != nil || len(names) != 1 || goal != "" {
				return nil, "", v2Errorf("Unsupported goal filter %s: Alumini takes one [\"is\", \"event:goal\", [name]], the name of a custom event", truncate(string(f)))
			}
			goal = names[0]
			continue
		}
		c, err := parseV2Filter(f, 0)
		if err != nil {
			return nil, "", err
		}
		all = append(all, c)
	}
	if len(all) == 0 {
		return nil, goal, nil
	}
	return &query.Condition{Op: "and", Of: all}, goal, nil
}

// parseV2Filter reads one filter: [op, dimension, [values]] or
// [and|or, [filters]] or [not, filter].
func parseV2Filter(raw json.RawMessage, depth int) (query.Condition, error) {
	bad := v2Errorf("Invalid filter %s: want [operator, dimension, [values]], [\"and\"|\"or\", [filters]] or [\"not\", filter]", truncate(string(raw)))
	if depth > 8 {
		return query.Condition{}, v2Errorf("Invalid filters: nested deeper than 8 levels")
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 {
		return query.Condition{}, bad
	}
	var op string
	if err := json.Unmarshal(parts[0], &op); err != nil {
		return query.Condition{}, bad
	}
	switch op {
	case "and", "or":
		var subs []json.RawMessage
		if len(parts) != 2 || json.Unmarshal(parts[1], &subs) != nil || len(subs) == 0 {
			return query.Condition{}, bad
		}
		c := query.Condition{Op: op}
		for _, s := range subs {
			sc, err := parseV2Filter(s, depth+1)
			if err != nil {
				return query.Condition{}, err
			}
			c.Of = append(c.Of, sc)
		}
		return c, nil
	case "not":
		if len(parts) != 2 {
			return query.Condition{}, bad
		}
		sc, err := parseV2Filter(parts[1], depth+1)
		if err != nil {
			return query.Condition{}, err
		}
		return query.Condition{Op: "not", Of: []query.Condition{sc}}, nil
	case "is", "is_not", "contains", "matches", "contains_not", "matches_not":
	default:
		return query.Condition{}, v2Errorf("Unsupported filter operator `%s`: Alumini answers is, is_not, contains, contains_not, matches, matches_not, and, or, not", truncate(op))
	}
	var dimName string
	var values []string
	if len(parts) == 4 {
		return query.Condition{}, v2Errorf("Unsupported filter modifiers in %s: Alumini's contains is case-insensitive, is and matches are case-sensitive", truncate(string(raw)))
	}
	if len(parts) != 3 || json.Unmarshal(parts[1], &dimName) != nil || json.Unmarshal(parts[2], &values) != nil || len(values) == 0 {
		return query.Condition{}, bad
	}
	d, err := v2Dimension(dimName)
	if err != nil {
		return query.Condition{}, err
	}
	if dimName == "visit:device" {
		for i, v := range values {
			values[i] = strings.ToLower(v) // Plausible says Desktop, Alumini stores desktop
		}
	}
	negate := op == "is_not" || strings.HasSuffix(op, "_not")
	base := query.Op(strings.TrimSuffix(op, "_not"))
	if op == "is_not" {
		base = query.OpIs
	}
	var leaf query.Condition
	if base == query.OpIs {
		qop, vals := query.OpIs, values
		if len(values) > 1 {
			qop = query.OpIn
		}
		f, err := query.NewFilter(d, qop, vals)
		if err != nil {
			return query.Condition{}, v2Errorf("Invalid filter: %v", err)
		}
		leaf = query.Condition{Filter: &f}
	} else {
		// contains and matches of several values: any of them.
		leaf = query.Condition{Op: "or"}
		for _, v := range values {
			f, err := query.NewFilter(d, base, []string{v})
			if err != nil {
				return query.Condition{}, v2Errorf("Invalid filter: %v", err)
			}
			leaf.Of = append(leaf.Of, query.Condition{Filter: &f})
		}
	}
	if negate {
		return query.Condition{Op: "not", Of: []query.Condition{leaf}}, nil
	}
	return leaf, nil
}
