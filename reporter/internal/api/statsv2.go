package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// StatsV2Path is Plausible's Stats API v2, answered from Alumini's reports
// so that scripts and connectors written for Plausible work by changing the
// host and key. What it supports and what not: docs/migrating.md.
const StatsV2Path = "/api/v2/query"

// v2Query is the body of a Plausible query.
type v2Query struct {
	SiteID     string            `json:"site_id"`
	Metrics    []string          `json:"metrics"`
	DateRange  json.RawMessage   `json:"date_range"`
	Dimensions []string          `json:"dimensions"`
	Filters    []json.RawMessage `json:"filters"`
	OrderBy    [][]string        `json:"order_by"`
	Include    map[string]any    `json:"include"`
	Pagination *struct {
		Limit  int `json:"limit"`
		Offset int `json:"offset"`
	} `json:"pagination"`
}

// v2Metrics are the metrics answered, each with what it needs.
var v2Metrics = []string{"visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events", "conversion_rate", "percentage"}

// v2Dimensions maps Plausible's dimensions to Alumini's.
var v2Dimensions = map[string]string{
	"event:page": "page", "event:name": "event_name", "event:hostname": "hostname",
	"visit:source": "source", "visit:referrer": "referrer", "visit:channel": "medium",
	"visit:utm_source": "utm_source", "visit:utm_medium": "utm_medium", "visit:utm_campaign": "utm_campaign",
	"visit:utm_term": "utm_term", "visit:utm_content": "utm_content",
	"visit:device": "device", "visit:browser": "browser", "visit:browser_version": "browser_version",
	"visit:os": "os", "visit:os_version": "os_version", "visit:country": "country", "visit:region": "region",
	"visit:entry_page": "entry_page", "visit:exit_page": "exit_page",
}

var v2Intervals = map[string]query.Interval{"time": "", "time:hour": query.Hour, "time:day": query.Day, "time:week": query.Week, "time:month": query.Month}

// v2Error is a query Alumini does not answer, with Plausible's kind of
// message.
type v2Error string

func (e v2Error) Error() string { return string(e) }

func v2Errorf(format string, args ...any) error { return v2Error(fmt.Sprintf(format, args...)) }

// v2Plan is a parsed query: what to run and how to shape the answer.
type v2Plan struct {
	q      v2Query
	params query.Params
	// unfiltered is params without the goal's filter: the visitors a
	// conversion rate is a share of.
	unfiltered query.Params
	goal       string
	dim        string // Plausible's name; "" for none
	breakBy    query.Dimension
	interval   query.Interval
	limit      int
	offset     int
}

func (h *Handler) serveStatsV2(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	if err := checkParams(r.URL.Query(), paramSet{}); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil || len(body) > maxBodyBytes {
		return writeError(w, http.StatusBadRequest, fmt.Sprintf("the query must be a JSON body of at most %d bytes", maxBodyBytes))
	}
	var q v2Query
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return writeError(w, http.StatusBadRequest, "Invalid query: "+err.Error())
	}
	if q.SiteID != c.ID && !slices.Contains(c.Domains, q.SiteID) {
		// The same answer as an unknown key: a key cannot probe other sites.
		return writeUnauthorized(w, msgInvalidKey)
	}
	loc, err := h.clientLocation(c)
	if err != nil {
		return writeError(w, http.StatusInternalServerError, "internal error: the client's time zone cannot be loaded")
	}
	plan, err := parseV2(q, h.now(), loc, h.cfg.MaxRows)
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	var rep report
	what := query.Report{Interval: plan.interval}
	if plan.dim != "" && plan.interval == "" {
		what.Dimension = &plan.breakBy
	}
	if err := h.sample(ctx, s, &plan.params, what, &rep); err != nil {
		return h.queryFailed(w, r, "stats_v2", c.ID, err)
	}
	results, total, err := h.runV2(ctx, s, plan)
	if err != nil {
		var ve v2Error
		if errors.As(err, &ve) {
			return writeError(w, http.StatusBadRequest, ve.Error())
		}
		return h.queryFailed(w, r, "stats_v2", c.ID, err)
	}
	meta := map[string]any{}
	if rep.SampleRate != nil && *rep.SampleRate < 1 {
		meta["sample_rate"] = *rep.SampleRate
	}
	if inc, _ := q.Include["total_rows"].(bool); inc {
		meta["total_rows"] = total
	}
	echo := map[string]any{
		"site_id": q.SiteID, "metrics": q.Metrics,
		"date_range": []string{plan.params.Range.From.In(loc).Format(time.RFC3339), plan.params.Range.To.Add(-time.Second).In(loc).Format(time.RFC3339)},
		"filters":    orEmpty(q.Filters), "dimensions": orEmpty(q.Dimensions), "order_by": q.OrderBy,
		"include": orEmptyMap(q.Include), "pagination": map[string]int{"limit": plan.limit, "offset": plan.offset},
	}
	return writeJSON(w, http.StatusOK, map[string]any{"results": results, "meta": meta, "query": echo})
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

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

// v2Row is one result row.
type v2Row struct {
	Metrics    []any    `json:"metrics"`
	Dimensions []string `json:"dimensions"`
	values     map[string]float64
}

// runV2 runs the plan on the existing report statements and shapes the
// rows as Plausible does.
func (h *Handler) runV2(ctx context.Context, s query.Scope, plan *v2Plan) ([]v2Row, int, error) {
	p := plan.params
	var rows []v2Row
	switch {
	case plan.dim == "":
		vals, err := h.v2Totals(ctx, s, plan)
		if err != nil {
			return nil, 0, err
		}
		rows = []v2Row{{Dimensions: []string{}, values: vals}}
	case plan.interval != "":
		pts, err := h.cfg.Store.Timeseries(ctx, s, p, plan.interval)
		if err != nil {
			return nil, 0, err
		}
		for _, pt := range pts {
			if pt.Events == 0 {
				continue // Plausible leaves out empty buckets
			}
			rows = append(rows, v2Row{Dimensions: []string{timeLabel(pt.Time, plan.interval)}, values: counts(pt.Counts)})
		}
	default:
		br, err := h.cfg.Store.Breakdown(ctx, s, p, plan.breakBy, h.cfg.MaxRows)
		if err != nil {
			return nil, 0, err
		}
		var total uint64
		if slices.Contains(plan.q.Metrics, "percentage") {
			m, err := h.cfg.Store.Aggregate(ctx, s, p)
			if err != nil {
				return nil, 0, err
			}
			total = m.Visitors
		}
		for _, r := range br {
			v := counts(r.Counts)
			v["percentage"] = ratio100(r.Visitors, total)
			value := r.Value
			if plan.dim == "visit:device" && value != "" {
				value = strings.ToUpper(value[:1]) + value[1:]
			}
			rows = append(rows, v2Row{Dimensions: []string{value}, values: v})
		}
	}
	sortV2(rows, plan)
	total := len(rows)
	rows = rows[min(plan.offset, len(rows)):min(plan.offset+plan.limit, len(rows))]
	for i := range rows {
		for _, m := range plan.q.Metrics {
			v := rows[i].values[m]
			if v == math.Trunc(v) && m != "views_per_visit" && m != "bounce_rate" && m != "conversion_rate" && m != "percentage" {
				rows[i].Metrics = append(rows[i].Metrics, uint64(v))
			} else {
				rows[i].Metrics = append(rows[i].Metrics, v)
			}
		}
	}
	if rows == nil {
		rows = []v2Row{}
	}
	return rows, total, nil
}

// v2Totals are the metrics of the whole range. With a goal, the counts are
// of the goal's events and the conversion rate is of all visitors, as
// Plausible reports them.
func (h *Handler) v2Totals(ctx context.Context, s query.Scope, plan *v2Plan) (map[string]float64, error) {
	m, err := h.cfg.Store.Aggregate(ctx, s, plan.params)
	if err != nil {
		return nil, err
	}
	vals := map[string]float64{
		"visitors": float64(m.Visitors), "visits": float64(m.Visits), "pageviews": float64(m.Pageviews), "events": float64(m.Events),
		"views_per_visit": m.ViewsPerVisit, "bounce_rate": m.BounceRate, "visit_duration": m.VisitDuration,
	}
	if plan.goal != "" {
		gp := plan.unfiltered
		gp.Goal, gp.Sample = plan.goal, plan.params.Sample
		g, err := h.cfg.Store.Aggregate(ctx, s, gp)
		if err != nil {
			return nil, err
		}
		vals["conversion_rate"] = *g.ConversionRate
	}
	return vals, nil
}

func counts(c query.Counts) map[string]float64 {
	vpv := 0.0
	if c.Visits > 0 {
		vpv = math.Round(float64(c.Pageviews)/float64(c.Visits)*100) / 100
	}
	return map[string]float64{"visitors": float64(c.Visitors), "visits": float64(c.Visits), "pageviews": float64(c.Pageviews),
		"events": float64(c.Events), "views_per_visit": vpv}
}

func ratio100(n, d uint64) float64 {
	if d == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(d)*10000) / 100
}

// timeLabel is Plausible's label of a bucket: the date, or date and time
// for hours, in the report's time zone.
func timeLabel(rfc3339 string, iv query.Interval) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return rfc3339
	}
	if iv == query.Hour {
		return t.Format(time.DateTime)
	}
	return t.Format(time.DateOnly)
}

// sortV2 orders rows by order_by, or as Plausible does by default: time
// ascending, otherwise the first metric descending.
func sortV2(rows []v2Row, plan *v2Plan) {
	order := plan.q.OrderBy
	if len(order) == 0 {
		if plan.interval != "" {
			order = [][]string{{plan.dim, "asc"}}
		} else if plan.dim != "" {
			order = [][]string{{plan.q.Metrics[0], "desc"}, {plan.dim, "asc"}}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, o := range order {
			var less, greater bool
			if o[0] == plan.dim {
				a, b := rows[i].Dimensions[0], rows[j].Dimensions[0]
				less, greater = a < b, a > b
			} else {
				a, b := rows[i].values[o[0]], rows[j].values[o[0]]
				less, greater = a < b, a > b
			}
			if o[1] == "desc" {
				less, greater = greater, less
			}
			if less || greater {
				return less
			}
		}
		return false
	})
}
