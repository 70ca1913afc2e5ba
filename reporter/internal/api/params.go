package api

import (
	"fmt"
	"net/url"
	"time"

	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

const (
	// defaultRange is the report range when neither end is given.
	defaultRange = 7 * 24 * time.Hour
	// maxRangeYears bounds one report, so a single request cannot scan a
	// client's whole history.
	maxRangeYears = 2
)

// The events table stores DateTime, Unix seconds in a UInt32: times outside
// these bounds cannot be compared with it.
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Unix(1<<32-1, 0).UTC()
)

// parseRange reads the half-open range [from, to) from the "from" and "to"
// parameters. Each is an RFC 3339 timestamp or a YYYY-MM-DD date in UTC; a
// "to" date means through the end of that day. Without "to" the range ends
// now; without "from" it starts seven days before its end. Both ends are
// rounded up to whole seconds, which selects the same stored (whole-second)
// timestamps and lets the response state the exact bounds queried.
func parseRange(params url.Values, now time.Time) (query.Range, error) {
	to := ceilSecond(now.UTC())
	if s, ok := first(params, "to"); ok {
		t, isDate, err := parseTime(s)
		if err != nil {
			return query.Range{}, fmt.Errorf("parameter \"to\": %w", err)
		}
		if isDate {
			t = t.AddDate(0, 0, 1)
		}
		to = t
	}
	from := to.Add(-defaultRange)
	if s, ok := first(params, "from"); ok {
		t, _, err := parseTime(s)
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

// first returns the first value of a parameter and whether it was given at
// all, so that an empty "from=" is an error rather than the default.
func first(params url.Values, name string) (string, bool) {
	vals, ok := params[name]
	if !ok || len(vals) == 0 {
		return "", false
	}
	return vals[0], true
}

// parseTime parses an RFC 3339 timestamp or a YYYY-MM-DD date (midnight
// UTC), reporting which it was.
func parseTime(s string) (t time.Time, isDate bool, err error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true, nil
	}
	t, err = time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%q is neither an RFC 3339 timestamp (2026-03-05T10:00:00Z) nor a date (2026-03-05)", s)
	}
	return ceilSecond(t.UTC()), false, nil
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}
