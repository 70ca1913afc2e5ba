package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

const (
	// maxRangeYears bounds one report, so a single request cannot scan a
	// client's whole history.
	maxRangeYears = 2
	// maxFilters bounds the filters of one request.
	maxFilters = 20
)

// The events table stores DateTime, Unix seconds in a UInt32: times outside
// these bounds cannot be compared with it.
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Unix(1<<32-1, 0).UTC()
)

// paramSet says which parameters an endpoint accepts and which of them
// may repeat.
type paramSet map[string]bool // name -> may repeat

// commonParams are accepted by every stats endpoint.
var commonParams = paramSet{
	"client_id": false, "period": false, "from": false, "to": false, "tz": false,
	"filter": true, "include_bots": false, "compare": false,
}

func (p paramSet) with(names ...string) paramSet {
	out := paramSet{}
	for k, v := range p {
		out[k] = v
	}
	for _, n := range names {
		rep := strings.HasSuffix(n, "*")
		out[strings.TrimSuffix(n, "*")] = rep
	}
	return out
}

// checkParams rejects unknown and repeated parameters: a misspelt "form"
// must not silently fall back to the default range.
func checkParams(params url.Values, known paramSet) error {
	for name, vals := range params {
		repeat, ok := known[name]
		if !ok {
			return fmt.Errorf("unknown parameter %q", truncate(name))
		}
		if len(vals) > 1 && !repeat {
			return fmt.Errorf("parameter %q: given %d times; give it once", name, len(vals))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// first returns the first value of a parameter and whether it was given at
// all, so that an empty "from=" is an error rather than the default.
func first(params url.Values, name string) (string, bool) {
	vals, ok := params[name]
	if !ok || len(vals) == 0 {
		return "", false
	}
	return vals[0], true
}

// parseLocation reads "tz", an IANA time zone name; def (the client's
// zone from the registry) when it is not given.
func parseLocation(params url.Values, def *time.Location) (*time.Location, error) {
	name, ok := first(params, "tz")
	if !ok {
		return def, nil
	}
	// LoadLocation also accepts "Local" and paths; only plain IANA names
	// are wanted, and a name must never reach the file system oddly.
	if name == "" || name == "Local" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") || len(name) > 64 {
		return nil, fmt.Errorf("parameter \"tz\": %q is not an IANA time zone name such as Europe/Berlin", truncate(name))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("parameter \"tz\": %q is not an IANA time zone name such as Europe/Berlin", truncate(name))
	}
	return loc, nil
}

// Periods a report can name instead of from/to.
var periods = []string{"today", "7d", "30d", "month", "12mo", "custom"}

// parseRange reads the range: a preset "period" (today, 7d, 30d, month,
// 12mo; 7d by default), or "from" and "to". Each of those is an RFC 3339
// timestamp or a YYYY-MM-DD date in the report's time zone; a "to" date
// means through the end of that day, and "to" defaults to now. Presets end
// at the end of the current day (month: of the current month) in loc.
func parseRange(params url.Values, now time.Time, loc *time.Location) (query.Range, error) {
	period, hasPeriod := first(params, "period")
	_, hasFrom := params["from"]
	_, hasTo := params["to"]
	if !hasPeriod && !hasFrom && !hasTo {
		period, hasPeriod = "7d", true
	}
	if hasPeriod && period != "custom" {
		if hasFrom || hasTo {
			return query.Range{}, fmt.Errorf("parameter \"period\": give either a period or from/to, not both")
		}
		local := now.In(loc)
		y, m, d := local.Date()
		tomorrow := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
		switch period {
		case "today":
			return query.Range{From: time.Date(y, m, d, 0, 0, 0, 0, loc), To: tomorrow}, nil
		case "7d":
			return query.Range{From: time.Date(y, m, d-6, 0, 0, 0, 0, loc), To: tomorrow}, nil
		case "30d":
			return query.Range{From: time.Date(y, m, d-29, 0, 0, 0, 0, loc), To: tomorrow}, nil
		case "month":
			return query.Range{From: time.Date(y, m, 1, 0, 0, 0, 0, loc), To: time.Date(y, m+1, 1, 0, 0, 0, 0, loc)}, nil
		case "12mo":
			return query.Range{From: time.Date(y, m-11, 1, 0, 0, 0, 0, loc), To: time.Date(y, m+1, 1, 0, 0, 0, 0, loc)}, nil
		default:
			return query.Range{}, fmt.Errorf("parameter \"period\": %q; want one of %s", truncate(period), strings.Join(periods, ", "))
		}
	}
	to := ceilSecond(now)
	if s, ok := first(params, "to"); ok {
		t, isDate, err := parseTime(s, loc)
		if err != nil {
			return query.Range{}, fmt.Errorf("parameter \"to\": %w", err)
		}
		if isDate {
			t = t.AddDate(0, 0, 1)
		}
		to = t
	}
	from := to.AddDate(0, 0, -7)
	if s, ok := first(params, "from"); ok {
		t, _, err := parseTime(s, loc)
		if err != nil {
			return query.Range{}, fmt.Errorf("parameter \"from\": %w", err)
		}
		from = t
	}
	switch {
	case !from.Before(to):
		return query.Range{}, fmt.Errorf("parameter \"from\" (%s) must be before \"to\" (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.After(from.AddDate(maxRangeYears, 0, 0)):
		return query.Range{}, fmt.Errorf("parameters \"from\" and \"to\": the range must not be longer than %d years", maxRangeYears)
	case from.Before(minTime) || to.After(maxTime):
		return query.Range{}, fmt.Errorf("parameters \"from\" and \"to\": times must lie between %s and %s", minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	return query.Range{From: from, To: to}, nil
}

// previous is the range of the same length just before r.
func previous(r query.Range) query.Range {
	return query.Range{From: r.From.Add(-r.To.Sub(r.From)), To: r.From}
}

// parseTime parses an RFC 3339 timestamp or a YYYY-MM-DD date (midnight in
// loc), reporting which it was.
func parseTime(s string, loc *time.Location) (t time.Time, isDate bool, err error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, true, nil
	}
	t, err = time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%q is neither an RFC 3339 timestamp (2026-03-05T10:00:00Z) nor a date (2026-03-05)", truncate(s))
	}
	return ceilSecond(t), false, nil
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// parseFilters reads the "filter" parameters, each
// "<dimension>:<op>:<value>"; the value of "in" is a JSON array of
// strings. The dimension may be "prop:<key>" (the key then holds no
// colon).
func parseFilters(params url.Values) ([]query.Filter, error) {
	raw := params["filter"]
	if len(raw) > maxFilters {
		return nil, fmt.Errorf("parameter \"filter\": at most %d filters", maxFilters)
	}
	var out []query.Filter
	for _, f := range raw {
		dimName, rest, ok := strings.Cut(f, ":")
		if dimName == "prop" && ok {
			var key string
			key, rest, ok = strings.Cut(rest, ":")
			dimName = "prop:" + key
		}
		op, value, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("parameter \"filter\": %q; want <dimension>:<is|is_not|contains|in>:<value>", truncate(f))
		}
		d, err := query.ParseDimension(dimName)
		if err != nil {
			return nil, fmt.Errorf("parameter \"filter\": %w", err)
		}
		values := []string{value}
		if query.Op(op) == query.OpIn {
			values = nil
			if err := json.Unmarshal([]byte(value), &values); err != nil {
				return nil, fmt.Errorf("parameter \"filter\": the value of \"in\" must be a JSON array of strings, such as [\"DE\",\"FR\"]")
			}
		}
		flt, err := query.NewFilter(d, query.Op(op), values)
		if err != nil {
			return nil, fmt.Errorf("parameter \"filter\": %w", err)
		}
		out = append(out, flt)
	}
	return out, nil
}

// parseBool reads an optional true/false parameter.
func parseBool(params url.Values, name string) (bool, error) {
	s, ok := first(params, name)
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("parameter %q: want true or false", name)
	}
	return b, nil
}

// parseLimit reads "limit": def when absent, 1..max otherwise.
func parseLimit(params url.Values, def, max int) (int, error) {
	s, ok := first(params, "limit")
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("parameter \"limit\": want a whole number from 1 to %d", max)
	}
	return n, nil
}

// parseParams reads what every stats endpoint shares; def is the time
// zone used when the request names none.
func parseParams(params url.Values, now time.Time, def *time.Location) (query.Params, bool, error) {
	loc, err := parseLocation(params, def)
	if err != nil {
		return query.Params{}, false, err
	}
	rng, err := parseRange(params, now, loc)
	if err != nil {
		return query.Params{}, false, err
	}
	filters, err := parseFilters(params)
	if err != nil {
		return query.Params{}, false, err
	}
	bots, err := parseBool(params, "include_bots")
	if err != nil {
		return query.Params{}, false, err
	}
	compare := false
	if c, ok := first(params, "compare"); ok {
		if c != "previous_period" {
			return query.Params{}, false, fmt.Errorf("parameter \"compare\": want previous_period")
		}
		compare = true
	}
	return query.Params{Range: rng, Location: loc, Filters: filters, IncludeBots: bots}, compare, nil
}
