package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// rangeJSON states the exact bounds a report covers.
type rangeJSON struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func rangeOf(r query.Range, loc *time.Location) rangeJSON {
	return rangeJSON{From: r.From.In(loc).Format(time.RFC3339), To: r.To.In(loc).Format(time.RFC3339)}
}

// report is the envelope of every stats answer.
type report struct {
	ClientID string     `json:"client_id"`
	From     string     `json:"from"`
	To       string     `json:"to"`
	TZ       string     `json:"tz"`
	Previous *rangeJSON `json:"previous,omitempty"`
	// SampleRate is the share of visitors the aggregate, time series and
	// breakdowns were counted on (1: all; 0.05: one in 20, counts scaled
	// up), for the comparison too; absent from other reports.
	SampleRate *float64 `json:"sample_rate,omitempty"`
	Results    any      `json:"results"`
	// Comparison holds the previous period's results when asked for.
	Comparison any `json:"comparison,omitempty"`
}

// prepare checks the parameters of a stats request of client c and
// returns the parsed params (in c's time zone unless "tz" names another),
// whether a comparison was asked for, and a context bounded by the query
// timeout. On failure it has answered itself.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request, c *registry.Client, extra paramSet) (query.Params, bool, context.Context, context.CancelFunc, int) {
	params := r.URL.Query()
	if err := checkParams(params, extra); err != nil {
		return query.Params{}, false, nil, nil, writeError(w, http.StatusBadRequest, err.Error())
	}
	def, err := h.clientLocation(c)
	if err != nil {
		h.cfg.Log.Error("loading the client's time zone", zap.String("client_id", c.ID), zap.String("time_zone", c.TimeZone), zap.Error(err))
		return query.Params{}, false, nil, nil, writeError(w, http.StatusInternalServerError, "internal error: the client's time zone cannot be loaded")
	}
	p, compare, err := parseParams(params, h.now(), def)
	if err != nil {
		return query.Params{}, false, nil, nil, writeError(w, http.StatusBadRequest, err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	return p, compare, ctx, cancel, 0
}

// clientLocation is the time zone of c's reports: the registry's
// time_zone (validated there as an IANA name; UTC when unset). Loaded zones
// are cached, as time.LoadLocation reads and parses the zone file on every
// call.
func (h *Handler) clientLocation(c *registry.Client) (*time.Location, error) {
	name := c.TimeZone
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if loc, ok := h.zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	h.zones.Store(name, loc)
	return loc, nil
}

func newReport(c *registry.Client, p query.Params, compare bool) report {
	rg := rangeOf(p.Range, p.Location)
	rep := report{ClientID: c.ID, From: rg.From, To: rg.To, TZ: p.Location.String()}
	if compare {
		prev := rangeOf(previous(p.Range), p.Location)
		rep.Previous = &prev
	}
	return rep
}

// sample picks the sample p's report what reads (query.Store.Sample) and
// states it in rep; the comparison reads the same sample of visitors.
func (h *Handler) sample(ctx context.Context, s query.Scope, p *query.Params, what query.Report, rep *report) error {
	k, err := h.cfg.Store.Sample(ctx, s, *p, what)
	if err != nil {
		return err
	}
	p.Sample = k
	rate := 1 / float64(k)
	rep.SampleRate = &rate
	return nil
}

var aggregateParams = commonParams.with("goal")

func (h *Handler) serveAggregate(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	p, compare, ctx, cancel, status := h.prepare(w, r, c, aggregateParams)
	if status != 0 {
		return status
	}
	defer cancel()
	p.Goal, _ = first(r.URL.Query(), "goal")
	if len(p.Goal) > 256 {
		return writeError(w, http.StatusBadRequest, "parameter \"goal\": at most 256 bytes")
	}
	rep := newReport(c, p, compare)
	if err := h.sample(ctx, s, &p, query.Report{}, &rep); err != nil {
		return h.queryFailed(w, r, "aggregate", c.ID, err)
	}
	m, err := h.cfg.Store.Aggregate(ctx, s, p)
	if err != nil {
		return h.queryFailed(w, r, "aggregate", c.ID, err)
	}
	rep.Results = m
	if compare {
		pp := p
		pp.Range = previous(p.Range)
		prev, err := h.cfg.Store.Aggregate(ctx, s, pp)
		if err != nil {
			return h.queryFailed(w, r, "aggregate", c.ID, err)
		}
		rep.Comparison = prev
	}
	return writeJSON(w, http.StatusOK, rep)
}

var timeseriesParams = commonParams.with("interval")

func (h *Handler) serveTimeseries(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	p, compare, ctx, cancel, status := h.prepare(w, r, c, timeseriesParams)
	if status != 0 {
		return status
	}
	defer cancel()
	iv := query.Day
	if v, ok := first(r.URL.Query(), "interval"); ok {
		iv = query.Interval(v)
	} else if p.Range.To.Sub(p.Range.From) <= 48*time.Hour {
		iv = query.Hour
	} else if p.Range.To.Sub(p.Range.From) > 120*24*time.Hour {
		iv = query.Month
	}
	rep := newReport(c, p, compare)
	if err := h.sample(ctx, s, &p, query.Report{Interval: iv}, &rep); err != nil {
		return h.queryFailed(w, r, "timeseries", c.ID, err)
	}
	pts, err := h.cfg.Store.Timeseries(ctx, s, p, iv)
	if err != nil {
		return h.queryFailed(w, r, "timeseries", c.ID, err)
	}
	rep.Results = map[string]any{"interval": iv, "points": pts}
	if compare {
		pp := p
		pp.Range = previous(p.Range)
		prev, err := h.cfg.Store.Timeseries(ctx, s, pp, iv)
		if err != nil {
			return h.queryFailed(w, r, "timeseries", c.ID, err)
		}
		rep.Comparison = map[string]any{"interval": iv, "points": prev}
	}
	return writeJSON(w, http.StatusOK, rep)
}

var breakdownParams = commonParams.with("dimension", "limit")

func (h *Handler) serveBreakdown(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	p, compare, ctx, cancel, status := h.prepare(w, r, c, breakdownParams)
	if status != 0 {
		return status
	}
	defer cancel()
	name, ok := first(r.URL.Query(), "dimension")
	if !ok {
		return writeError(w, http.StatusBadRequest, "parameter \"dimension\" is required: one of "+strings.Join(query.DimensionNames(), ", "))
	}
	d, err := query.ParseDimension(name)
	if err != nil {
		return writeError(w, http.StatusBadRequest, "parameter \"dimension\": "+err.Error())
	}
	limit, err := parseLimit(r.URL.Query(), 10, h.cfg.MaxRows)
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	rep := newReport(c, p, compare)
	if err := h.sample(ctx, s, &p, query.Report{Dimension: &d}, &rep); err != nil {
		return h.queryFailed(w, r, "breakdown", c.ID, err)
	}
	rows, err := h.cfg.Store.Breakdown(ctx, s, p, d, limit)
	if err != nil {
		return h.queryFailed(w, r, "breakdown", c.ID, err)
	}
	rep.Results = map[string]any{"dimension": d.String(), "rows": rows}
	if compare {
		pp := p
		pp.Range = previous(p.Range)
		prev, err := h.cfg.Store.Breakdown(ctx, s, pp, d, limit)
		if err != nil {
			return h.queryFailed(w, r, "breakdown", c.ID, err)
		}
		rep.Comparison = map[string]any{"dimension": d.String(), "rows": prev}
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (h *Handler) serveRealtime(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	if err := checkParams(r.URL.Query(), paramSet{"client_id": false}); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	now := h.now()
	n, err := h.cfg.Store.CurrentVisitors(ctx, s, now, currentVisitors)
	if err != nil {
		return h.queryFailed(w, r, "realtime", c.ID, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"client_id": c.ID, "since": now.Add(-currentVisitors).UTC().Format(time.RFC3339),
		"results": map[string]uint64{"current_visitors": n},
	})
}

var funnelParams = commonParams.with("step*", "window")

func (h *Handler) serveFunnel(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	p, _, ctx, cancel, status := h.prepare(w, r, c, funnelParams)
	if status != 0 {
		return status
	}
	defer cancel()
	var steps []query.Step
	for _, st := range r.URL.Query()["step"] {
		kind, value, ok := strings.Cut(st, ":")
		if !ok || (kind != string(query.StepPage) && kind != string(query.StepEvent)) {
			return writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter \"step\": %q; want page:<path> or event:<name>", truncate(st)))
		}
		steps = append(steps, query.Step{Kind: query.StepKind(kind), Value: value})
	}
	window := 24 * time.Hour
	if v, ok := first(r.URL.Query(), "window"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return writeError(w, http.StatusBadRequest, "parameter \"window\": want a duration such as 30m or 24h")
		}
		window = d
	}
	out, err := h.cfg.Store.Funnel(ctx, s, p, steps, window)
	if err != nil {
		return h.queryFailed(w, r, "funnel", c.ID, err)
	}
	rep := newReport(c, p, false)
	rep.Results = map[string]any{"window": window.String(), "steps": out}
	return writeJSON(w, http.StatusOK, rep)
}

func (h *Handler) serveRetention(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	p, _, ctx, cancel, status := h.prepare(w, r, c, commonParams)
	if status != 0 {
		return status
	}
	defer cancel()
	if p.Range.To.Sub(p.Range.From) > 53*7*24*time.Hour {
		return writeError(w, http.StatusBadRequest, "parameters \"from\" and \"to\": retention covers at most 53 weeks")
	}
	out, err := h.cfg.Store.Retention(ctx, s, p)
	if err != nil {
		return h.queryFailed(w, r, "retention", c.ID, err)
	}
	rep := newReport(c, p, false)
	rep.Results = map[string]any{"cohorts": out}
	return writeJSON(w, http.StatusOK, rep)
}
