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
