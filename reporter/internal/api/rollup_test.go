package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// rollDays are the days of rolledVisits: the first two are rolled up, the
// third is "today" and counted from events.
var rollDays = [3]time.Time{
	time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC),
	time.Date(2026, 3, 21, 0, 0, 0, 0, time.UTC),
	time.Date(2026, 3, 22, 0, 0, 0, 0, time.UTC),
}

// rollNow is the clock of Roll: an hour and more after the second day's
// end, so the first two days are rolled and the third is not.
var rollNow = rollDays[2].Add(70 * time.Minute)

// rolledVisits are 300 visitors of client shop over rollDays with what
// makes rolling up hard: visits across hours and across midnight (some
// start at 23:4x), visits whose source, hostname or campaign changes
// midway, bots, custom events, and visits of one event.
func rolledVisits() []*aluminiv1.Event {
	rng := rand.New(rand.NewPCG(19, 2))
	var evs []*aluminiv1.Event
	browsers := []string{"Firefox", "Chrome", "Safari", "Edge"}
	countries := []string{"DE", "FR", "NL", "US"}
	sources := []string{"", "Google", "Bing", "Newsletter"}
	for v := range 300 {
		visitor := uint64(5000 + v)
		browser, country := browsers[rng.IntN(len(browsers))], countries[rng.IntN(len(countries))]
		bot := v%25 == 0
		for s := range 1 + rng.IntN(3) {
			day := rollDays[rng.IntN(len(rollDays))]
			start := day.Add(time.Duration(rng.IntN(24*60)) * time.Minute)
			if v%10 == 0 {
				start = day.Add(23*time.Hour + 40*time.Minute + time.Duration(rng.IntN(15))*time.Minute)
			}
			session := visitor*100 + uint64(s)
			n := 1 + rng.IntN(8)
			source := sources[rng.IntN(len(sources))]
			ts := start
			for i := range n {
				ev := &aluminiv1.Event{ClientId: "shop", EventId: fmt.Sprintf("roll-%d-%d-%d", v, s, i),
					Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli(),
					VisitorId: visitor, SessionId: session, Path: fmt.Sprintf("/p%d", rng.IntN(6)),
					Hostname: "shop.example", Browser: browser, BrowserVersion: "1" + browser[:1], Os: "Linux",
					DeviceType: aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP, Country: country, Region: country + "-1", City: country + " city",
					ReferrerSource: source, IsBot: bot}
				ev.Url = "https://" + ev.Hostname + ev.Path
				if i == 0 && source != "" {
					ev.Referrer, ev.ReferrerMedium, ev.UtmCampaign = "https://"+source+".example/", "search", "spring"
				}
				if i == 2 && v%3 == 0 {
					ev.Hostname, ev.UtmSource = "www.shop.example", "banner" // a visit-level value changes midway
				}
				if i > 0 && rng.IntN(5) == 0 {
					ev.Type, ev.Name = aluminiv1.EventType_EVENT_TYPE_CUSTOM, "signup"
				}
				evs = append(evs, ev)
				ts = ts.Add(time.Duration(1+rng.IntN(25)) * time.Minute) // whole minutes: no two events of a visit at once
			}
		}
	}
	return evs
}

// rollEnv is an environment whose handler answers from rolled-up
// sessions, with a second store on the same database that reads events
// only: every report of one must equal the other's.
type rollEnv struct {
	*env
	rolled, raw *query.Store
}

func newRollEnv(t *testing.T) rollEnv {
	t.Helper()
	e := newEnv(t)
	insert(t, e.conn, rolledVisits())
	rolled := e.h.cfg.Store
	ok, err := rolled.RollUp(context.Background())
	if err != nil || !ok {
		t.Fatalf("RollUp = %v, %v; want true (migrated database)", ok, err)
	}
	raw, err := query.NewStore(e.conn, prometheus.NewRegistry(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return rollEnv{env: e, rolled: rolled, raw: raw}
}

// roll rolls up until no day is left.
func (e rollEnv) roll(t *testing.T) {
	t.Helper()
	left, err := e.rolled.Roll(context.Background(), rollNow)
	if err != nil || left != 0 {
		t.Fatalf("Roll = %d left, %v", left, err)
	}
}

// rollCases are the reports compared: ranges over rolled days and today,
// whole rolled days only, hours within days, a time zone an hour off UTC
// and one half an hour off (which reads events only).
func rollCases(t *testing.T) []query.Params {
	t.Helper()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	end := rollDays[2].Add(24 * time.Hour)
	return []query.Params{
		{Range: query.Range{From: rollDays[0], To: end}},
		{Range: query.Range{From: rollDays[0], To: end}, IncludeBots: true},
		{Range: query.Range{From: rollDays[0], To: rollDays[2]}},
		{Range: query.Range{From: rollDays[0].Add(10 * time.Hour), To: rollDays[1].Add(13 * time.Hour)}},
		{Range: query.Range{From: rollDays[1].Add(23 * time.Hour), To: rollDays[2].Add(time.Hour)}},
		{Range: query.Range{From: rollDays[0].Add(-time.Hour), To: end.Add(-time.Hour)}, Location: berlin},
		{Range: query.Range{From: rollDays[0].Add(-330 * time.Minute), To: end.Add(-330 * time.Minute)}, Location: kolkata},
	}
}

// reportsOf runs the reports the rolled-up sessions answer on store, as
// JSON text per report name: every one when all, else the aggregate, the
// daily series and the breakdowns whose rows take different paths.
func reportsOf(t *testing.T, store *query.Store, p query.Params, all bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	sc, err := query.ScopeOf(&registry.Client{ID: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	put := func(name string, v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	m, err := store.Aggregate(ctx, sc, p)
	put("aggregate", m, err)
	intervals := []query.Interval{query.Day}
	dims := []string{"entry_page", "exit_page", "hostname", "utm_source", "browser"}
	if all {
		intervals, dims = []query.Interval{query.Hour, query.Day, query.Week, query.Month}, query.DimensionNames()
	}
	for _, iv := range intervals {
		pts, err := store.Timeseries(ctx, sc, p, iv)
		put("timeseries "+string(iv), pts, err)
	}
	for _, name := range dims {
		d, err := query.ParseDimension(name)
		if err != nil {
			continue // prop:<key>
		}
		rows, err := store.Breakdown(ctx, sc, p, d, 1000)
		put("breakdown "+name, rows, err)
	}
	return out
}

// sameReports checks that the two stores answer alike, every report of
// every case when all, else a few reports of the first three cases, and
// that the rolled-up sessions did answer (Exact) where they can.
func (e rollEnv) sameReports(t *testing.T, when string, all bool) {
	t.Helper()
	for i, p := range rollCases(t) {
		if !all && i > 2 {
			break
		}
		if exact := e.rolled.Exact(p, query.Report{}); exact != (p.Location == nil || p.Location.String() != "Asia/Kolkata") {
			t.Errorf("%s, case %d: Exact = %v", when, i, exact)
		}
		got, want := reportsOf(t, e.rolled, p, all), reportsOf(t, e.raw, p, all)
		for name := range want {
			if got[name] != want[name] {
				t.Errorf("%s, case %d (%s, %s to %s): %s\nrolled up: %s\nfrom events: %s", when, i, p.Location,
					p.Range.From.Format(time.RFC3339), p.Range.To.Format(time.RFC3339), name, got[name], want[name])
			}
		}
	}
}

// TestRolledUpReportsEqualEvents compares every report the rolled-up
// sessions answer with the same report counted from events, before any
// roll (all from events), after rolling two of three days, after a
// replay inserted copies of a rolled day's events, after late events
// arrived for a rolled day (the next roll takes them in), and after an
// erasure (the visitor leaves the rolled-up rows too).
func TestRolledUpReportsEqualEvents(t *testing.T) {
	e := newRollEnv(t)
	e.sameReports(t, "before rolling", false)

	e.roll(t)
	var rows uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+chschema.SessionsTable+" WHERE day = toDate('2026-03-22')").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("rolled rows of today = %d, %v; want 0 (today is counted from events)", rows, err)
	}
	e.sameReports(t, "rolled", true)

	// A replay: copies of the first day's events, in a part of their own.
	var copies []*aluminiv1.Event
	for _, ev := range rolledVisits() {
		if ev.TimestampMs < rollDays[1].UnixMilli() {
			copies = append(copies, ev)
		}
	}
	insert(t, e.conn, copies)
	e.sameReports(t, "replayed, before the next roll", false)
	e.roll(t)
	e.sameReports(t, "replayed and rolled again", false)

	// Late events of a rolled day: a new visit at noon of the first day.
	late := rolledVisits()[0]
	late.EventId, late.SessionId, late.TimestampMs = "late-1", 99, rollDays[0].Add(12*time.Hour).UnixMilli()
	insert(t, e.conn, []*aluminiv1.Event{late})
	e.roll(t)
	e.sameReports(t, "late events rolled", false)

	// An erasure: hidden at once, then gone from events and the rolled-up
	// rows once its mutations are done and the day is rolled again.
	ctx := context.Background()
	sc, _ := query.ScopeOf(&registry.Client{ID: "shop"})
	visitor := rolledVisits()[0].VisitorId
	if _, err := e.rolled.Erase(ctx, sc, visitor, rollNow); err != nil {
		t.Fatal(err)
	}
	e.sameReports(t, "erased, before its mutations", false)
	eventually.True(t, time.Minute, "the erasure to be done", func() bool {
		if _, err := e.rolled.FinishErasures(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := e.rolled.ErasureStatus(ctx, sc, visitor)
		return err == nil && st.Done
	})
	e.roll(t)
	e.sameReports(t, "erased and rolled again", false)
	eventually.True(t, time.Minute, "the erased visitor's rolled-up rows to be deleted", func() bool {
		var n uint64
		err := e.conn.QueryRow(ctx, "SELECT count() FROM "+chschema.SessionsTable+" WHERE visitor_id = ?", visitor).Scan(&n)
		return err == nil && n == 0
	})

	// The rolls replaced above keep their rows for a while (a report may
	// have just picked them), then one mutation deletes them.
	var kept uint64
	if err := e.conn.QueryRow(ctx, "SELECT uniqExact(roll) FROM "+chschema.SessionsTable).Scan(&kept); err != nil || kept < 3 {
		t.Fatalf("rolls with rows = %d, %v; want the replaced ones too", kept, err)
	}
	if _, err := e.rolled.Roll(ctx, rollNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, time.Minute, "the replaced rolls' rows to be deleted", func() bool {
		var n uint64
		err := e.conn.QueryRow(ctx, "SELECT count() FROM (SELECT client_id, day FROM "+chschema.SessionsTable+" GROUP BY client_id, day HAVING uniqExact(roll) > 1)").Scan(&n)
		return err == nil && n == 0
	})
	e.sameReports(t, "replaced rolls deleted", false)
}

// TestExactReportsAreNotSampled: with rolled-up sessions, reports over
// more events than -sample-above-events that they answer count every
// event and say so, while the others (a filter, a page breakdown, a time
// zone off the hours, a range whose days not rolled up yet hold more than
// that) are still sampled.
func TestExactReportsAreNotSampled(t *testing.T) {
	e := newRollEnv(t)
	e.rolled.SampleAbove(100)
	e.roll(t)
	rate := func(target string) float64 {
		t.Helper()
		status, _, body := request{target: target, auth: "Bearer " + shopKey}.do(t, e.h)
		if status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", target, status, body)
		}
		var rep struct {
			SampleRate *float64 `json:"sample_rate"`
		}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
		return sampleRate(rep.SampleRate)
	}
	const r = "from=2026-03-20&to=2026-03-21" // the rolled days
	for target, exact := range map[string]bool{
		"/api/v1/stats/aggregate?from=2026-03-20&to=2026-03-22": false, // and today's hundreds of events
		"/api/v1/stats/aggregate?" + r:                          true,
		"/api/v1/stats/timeseries?interval=day&" + r:            true,
		"/api/v1/stats/breakdown?dimension=browser&" + r:        true,
		"/api/v1/stats/breakdown?dimension=entry_page&" + r:     true,
		"/api/v1/stats/breakdown?dimension=page&" + r:           false,
		"/api/v1/stats/aggregate?filter=country:is:DE&" + r:     false,
		"/api/v1/stats/breakdown?dimension=event_name&" + r:     false,
		"/api/v1/stats/aggregate?goal=signup&" + r:              false,
		"/api/v1/stats/aggregate?" + r + "&tz=Asia%2FKolkata":   false,
	} {
		if got := rate(target); (got == 1) != exact {
			t.Errorf("GET %s: sample_rate = %v; want exact = %v", target, got, exact)
		}
	}
}
