package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/api"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// benchKey is the API key of the measured client in the throw-away
// registry the benchmark writes; it never leaves the run.
const benchKey = "alm_bench000000000000000000000000000000000000000"

// Targets of issue 6.
const (
	targetP95   = 300 * time.Millisecond
	targetRatio = 1.2
)

// benchCase is one report: the API request and the statement the
// reporter's builder makes for it.
type benchCase struct {
	name   string
	target string
	q      query.Query
	// check compares the API's JSON answer with clickhouse-client's TSV
	// output of the same SQL, so a wrong inlining cannot go unnoticed.
	// The API scales what a sample counted by k; the TSV is unscaled.
	check func(answer []byte, tsv string, k uint64) error
	// k is the sample the report reads: 1 when it counts every event.
	k uint64
}

// sample is one timed run.
type sample struct{ api, direct, directWall time.Duration }

func run(ctx context.Context, cfg config, out, progress io.Writer) error {
	admin, err := (&chconf.Config{Addr: cfg.Addr, Database: "default"}).Open()
	if err != nil {
		return err
	}
	defer admin.Close()
	reuse := false
	if cfg.Reuse {
		n, err := countEvents(ctx, admin, cfg.Database)
		if err != nil {
			return err
		}
		reuse = n == uint64(cfg.Events)
		fmt.Fprintf(progress, "database %s holds %d events; reuse: %v\n", cfg.Database, n, reuse)
	}
	if !reuse {
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
			return err
		}
		if err := admin.Exec(ctx, "CREATE DATABASE "+cfg.Database); err != nil {
			return err
		}
	}
	if !cfg.Keep {
		defer func() {
			if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
				fmt.Fprintf(progress, "dropping %s: %v\n", cfg.Database, err)
			}
		}()
	}
	conn, err := (&chconf.Config{Addr: cfg.Addr, Database: cfg.Database}).Open()
	if err != nil {
		return err
	}
	defer conn.Close()

	if reuse {
		// A kept database may predate a migration the queries need.
		if err := chschema.Apply(ctx, conn, zap.NewNop()); err != nil {
			return fmt.Errorf("migrating the kept database: %w", err)
		}
	}
	end := cfg.End
	if end.IsZero() {
		end = time.Now().UTC().Truncate(24 * time.Hour)
	}
	if !reuse {
		began := time.Now()
		if err := seed(ctx, conn, cfg, end.AddDate(0, 0, -cfg.Days), progress); err != nil {
			return err
		}
		fmt.Fprintf(out, "Seeded %d events of %d clients in %s.\n", cfg.Events, cfg.Clients, time.Since(began).Round(time.Second))
	}
	// Background merges of the fresh parts would compete with the timed
	// queries for the two cores; a site's table at steady state is merged.
	settled, err := waitForMerges(ctx, conn, 5*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "merges settled after %s\n", settled.Round(time.Second))

	// The report covers the seeded days, wherever a reused database's
	// data lies.
	var first time.Time
	var events, parts uint64
	if err := conn.QueryRow(ctx, "SELECT min(timestamp), count() FROM events WHERE client_id = ?", clientID(0)).Scan(&first, &events); err != nil {
		return fmt.Errorf("reading the seeded range: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active").Scan(&parts); err != nil {
		return fmt.Errorf("counting parts: %w", err)
	}
	from := first.UTC().Truncate(24 * time.Hour)
	rng := query.Range{From: from, To: from.AddDate(0, 0, cfg.Days)}
	fmt.Fprintf(out, "Client %s: %d events from %s to %s (UTC); events table: %d active parts.\n\n",
		clientID(0), events, rng.From.Format(time.DateOnly), rng.To.Format(time.DateOnly), parts)

	srv, store, err := startReporter(ctx, cfg, conn)
	if err != nil {
		return err
	}
	defer srv.Close()
	if cfg.RollUp {
		if err := rollUp(ctx, store, out, progress); err != nil {
			return err
		}
	}
	cases, k, err := buildCases(ctx, store, rng)
	if err != nil {
		return err
	}
	if k > 1 {
		fmt.Fprintf(out, "Reports not answered from rolled-up sessions read a sample of one in %d visitors (-sample-above-events %d); the SQL is the sampled SQL.\n\n", k, cfg.SampleAbove)
	} else {
		fmt.Fprintf(out, "Reports count every event (-sample-above-events %d).\n\n", cfg.SampleAbove)
	}
	if cfg.SQLOut != "" {
		return writeSQL(cfg.SQLOut, cases)
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("-clickhouse-addr: %w", err)
	}
	cl := chClient{bin: cfg.ClientBinary, host: host, port: port, database: cfg.Database}

	fmt.Fprintf(out, "| query | counted | reporter p50 | reporter p95 | clickhouse-client p50 | clickhouse-client p95 | overhead p50 | overhead p95 | p95 < 300 ms |\n")
	fmt.Fprintf(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	var worstRatio float64
	var slow []string
	var all []sample
	for _, c := range cases {
		sql, err := inline(c.q.SQL, c.q.Args)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		var samples []sample
		for i := 0; i < cfg.Warmup+cfg.Reps; i++ {
			// Alternate the two paths so both see the same cache state.
			answer, apiTime, err := getAPI(ctx, srv.URL+c.target)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			// TSV rather than the Null format costs nothing measurable for
			// these few rows, and lets every run double as a check.
			tsv, direct, wall, err := cl.run(ctx, sql, "TSV")
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if err := c.check(answer, tsv, c.k); err != nil {
				return fmt.Errorf("%s: the API and clickhouse-client disagree: %w", c.name, err)
			}
			if i >= cfg.Warmup {
				samples = append(samples, sample{apiTime, direct, wall})
			}
		}
		all = append(all, samples...)
		a50, a95 := percentiles(samples, func(s sample) time.Duration { return s.api })
		d50, d95 := percentiles(samples, func(s sample) time.Duration { return s.direct })
		r50, r95 := ratio(a50, d50), ratio(a95, d95)
		worstRatio = max(worstRatio, r50)
		verdict := "yes"
		if a95 >= targetP95 {
			verdict = "**no**"
			slow = append(slow, c.name)
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s | %.2fx | %.2fx | %s |\n", c.name, counted(c), ms(a50), ms(a95), ms(d50), ms(d95), r50, r95, verdict)
	}
	fmt.Fprintf(out, "\n%d queries, %d timed runs each (after %d warm-up) per path. Largest overhead (p50): %.2fx (target ≤ %.1fx).\n",
		len(cases), cfg.Reps, cfg.Warmup, worstRatio, targetRatio)
	startup, _ := percentiles(all, func(s sample) time.Duration { return s.directWall - s.direct })
	fmt.Fprintf(out, "clickhouse-client times are its own --time figures; its process start-up (median %s per run) is left out.\n", ms(startup))
	if len(slow) == 0 {
		fmt.Fprintf(out, "Every reporter p95 is under %s.\n", ms(targetP95))
	} else {
		fmt.Fprintf(out, "Reporter p95 at or over %s: %d of %d (%s).\n", ms(targetP95), len(slow), len(cases), strings.Join(slow, ", "))
	}
	if k > 1 {
		return accuracy(ctx, store, rng, k, out)
	}
	return nil
}

// writeSQL writes each case's SQL, inlined, after a comment naming it.
func writeSQL(path string, cases []benchCase) error {
	var b strings.Builder
	for _, c := range cases {
		sql, err := inline(c.q.SQL, c.q.Args)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		fmt.Fprintf(&b, "-- %s (%s)\n%s\n", c.name, counted(c), strings.Join(strings.Fields(sql), " "))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// counted says how a case counts: exactly from rolled-up sessions,
// exactly from events, or from a sample.
func counted(c benchCase) string {
	switch {
	case c.k > 1:
		return fmt.Sprintf("1 in %d", c.k)
	case strings.Contains(c.q.SQL, chschema.SessionsTable):
		return "exact, rolled up"
	}
	return "exact, events"
}

// rollUp rolls up every finished day, as the reporter's background loop
// does, and says how long it took (nothing to do on a reused database
// rolled before).
func rollUp(ctx context.Context, store *query.Store, out, progress io.Writer) error {
	began := time.Now()
	for {
		left, err := store.Roll(ctx, time.Now())
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		fmt.Fprintf(progress, "rolling up: %d client days left after %s\n", left, time.Since(began).Round(time.Second))
	}
	fmt.Fprintf(out, "Rolled up the sessions of the finished days in %s.\n\n", time.Since(began).Round(time.Second))
	return nil
}

func countEvents(ctx context.Context, admin driver.Conn, database string) (uint64, error) {
	var tables uint64
	if err := admin.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'events'", database).Scan(&tables); err != nil {
		return 0, err
	}
	if tables == 0 {
		return 0, nil
	}
	var n uint64
	err := admin.QueryRow(ctx, "SELECT count() FROM "+database+".events").Scan(&n)
	return n, err
}

// waitForMerges waits until no merge of the database has run for three
// polls in a row, or limit passes.
func waitForMerges(ctx context.Context, conn driver.Conn, limit time.Duration) (time.Duration, error) {
	began := time.Now()
	quiet := 0
	for quiet < 3 && time.Since(began) < limit {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = currentDatabase()").Scan(&n); err != nil {
			return 0, fmt.Errorf("watching merges: %w", err)
		}
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return time.Since(began), nil
}

// startReporter serves the reporter's real API handler over loopback
// HTTP, with a registry of the seeded clients and limits that do not get
// in the way of the measurement.
func startReporter(ctx context.Context, cfg config, conn driver.Conn) (*httptest.Server, *query.Store, error) {
	dir, err := os.MkdirTemp("", "reporter-bench")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir) // the registry is read once below
	var doc strings.Builder
	doc.WriteString("clients:\n")
	for i := 0; i < cfg.Clients; i++ {
		fmt.Fprintf(&doc, "  - id: %s\n    write_keys: [wk_%s]\n", clientID(i), clientID(i))
		if i == 0 {
			fmt.Fprintf(&doc, "    api_key_hashes: [%q]\n", registry.HashAPIKey(benchKey))
		}
	}
	path := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(path, []byte(doc.String()), 0o600); err != nil {
		return nil, nil, err
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		return nil, nil, err
	}
	timeout := time.Minute
	store, err := query.NewStore(conn, prometheus.NewRegistry(), timeout)
	if err != nil {
		return nil, nil, err
	}
	store.SampleAbove(cfg.SampleAbove)
	if err := store.Init(ctx, zap.NewNop()); err != nil {
		return nil, nil, err
	}
	if cfg.RollUp {
		ok, err := store.RollUp(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("rolled-up sessions: %w", err)
		}
		if !ok {
			return nil, nil, errors.New("rolled-up sessions: the database has no tables for them (schema migration 8)")
		}
		store.SampleRolledAbove(cfg.SampleRolledAbove)
	}
	h, err := api.New(api.Config{
		Registry: reg, Store: store, Log: zap.NewNop(), Metrics: prometheus.NewRegistry(),
		QueryTimeout: timeout, RateLimit: 1e6, RateBurst: 1e6, MaxRows: 1000, MaxExport: 1000, TrendsMinClients: 5,
	})
	if err != nil {
		return nil, nil, err
	}
	return httptest.NewServer(h), store, nil
}

// buildCases lists the measured reports of client 0 over rng in UTC (the
// seeded clients' zone): the aggregate, the daily time series and every
// breakdown, top 10 rows as the dashboard asks.
func buildCases(ctx context.Context, store *query.Store, rng query.Range) ([]benchCase, uint64, error) {
	c0 := &registry.Client{ID: clientID(0)}
	sc, err := query.ScopeOf(c0)
	if err != nil {
		return nil, 0, err
	}
	p := query.Params{Range: rng, Location: time.UTC}
	// The sample of the reports not answered from rolled-up sessions: a
	// page breakdown's.
	page, err := query.ParseDimension("page")
	if err != nil {
		return nil, 0, err
	}
	k, err := store.Sample(ctx, sc, p, query.Report{Dimension: &page})
	if err != nil {
		return nil, 0, err
	}
	period := url.Values{
		"from": {rng.From.Format(time.DateOnly)},
		"to":   {rng.To.AddDate(0, 0, -1).Format(time.DateOnly)}, // inclusive date
		"tz":   {"UTC"},
	}
	var cases []benchCase
	add := func(name, target string, r query.Report, check func([]byte, string, uint64) error) error {
		// The sample the API picks for this report, picked the same way.
		pc := p
		if pc.Sample, err = store.Sample(ctx, sc, p, r); err != nil {
			return err
		}
		q, err := store.Statement(ctx, sc, pc, r, 10)
		if err != nil {
			return err
		}
		cases = append(cases, benchCase{name, target, q, check, pc.Sample})
		return nil
	}
	if err := add("aggregate", api.AggregatePath+"?"+period.Encode(), query.Report{}, checkAggregate); err != nil {
		return nil, 0, err
	}
	ts := cloneWith(period, "interval", "day")
	if err := add("timeseries (day)", api.TimeseriesPath+"?"+ts.Encode(), query.Report{Interval: query.Day}, checkTimeseries); err != nil {
		return nil, 0, err
	}
	for _, name := range query.DimensionNames() {
		if strings.HasPrefix(name, "prop:") {
			name = "prop:plan"
		}
		d, err := query.ParseDimension(name)
		if err != nil {
			return nil, 0, err
		}
		bd := cloneWith(period, "dimension", name)
		if err := add("breakdown "+name, api.BreakdownPath+"?"+bd.Encode(), query.Report{Dimension: &d}, checkBreakdown); err != nil {
			return nil, 0, err
		}
	}
	return cases, k, nil
}

func cloneWith(v url.Values, key, value string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	out.Set(key, value)
	return out
}

func tsvRows(tsv string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(tsv, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

func checkAggregate(answer []byte, tsv string, k uint64) error {
	var a struct {
		Results query.Metrics `json:"results"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return err
	}
	rows := tsvRows(tsv)
	if len(rows) != 1 || len(rows[0]) < 4 {
		return fmt.Errorf("clickhouse-client answered %q", tsv)
	}
	want := fmt.Sprintf("%d\t%d\t%d\t%d", a.Results.Visitors, a.Results.Visits, a.Results.Pageviews, a.Results.Events)
	var scaled []string
	for _, v := range rows[0][:4] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return err
		}
		scaled = append(scaled, strconv.FormatUint(n*k, 10))
	}
	if got := strings.Join(scaled, "\t"); got != want || a.Results.Visitors == 0 {
		return fmt.Errorf("visitors, visits, page views, events: clickhouse-client %s, API %s", got, want)
	}
	return nil
}

func checkTimeseries(answer []byte, tsv string, k uint64) error {
	var a struct {
		Results struct {
			Points []query.Point `json:"points"`
		} `json:"results"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return err
	}
	var sum, nonEmpty uint64
	for _, pt := range a.Results.Points {
		sum += pt.Pageviews
		if pt.Events > 0 {
			nonEmpty++
		}
	}
	var want uint64
	rows := tsvRows(tsv)
	for _, r := range rows {
		n, err := strconv.ParseUint(r[3], 10, 64)
		if err != nil {
			return err
		}
		want += n * k
	}
	if uint64(len(rows)) != nonEmpty || sum != want || sum == 0 {
		return fmt.Errorf("buckets %d, page views %d from clickhouse-client; %d, %d from the API", len(rows), want, nonEmpty, sum)
	}
	return nil
}

func checkBreakdown(answer []byte, tsv string, k uint64) error {
	var a struct {
		Results struct {
			Rows []query.Row `json:"rows"`
		} `json:"results"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return err
	}
	rows := tsvRows(tsv)
	if len(rows) != len(a.Results.Rows) || len(rows) == 0 {
		return fmt.Errorf("%d rows from clickhouse-client, %d from the API", len(rows), len(a.Results.Rows))
	}
	got, err := strconv.ParseUint(rows[0][1], 10, 64)
	if err != nil {
		return err
	}
	if want := a.Results.Rows[0].Visitors; got*k != want {
		return fmt.Errorf("top row's visitors: clickhouse-client %d (scaled by %d: %d), API %d", got, k, got*k, want)
	}
	return nil
}

// getAPI requests target with the benchmark key and returns the body and
// the time from sending the request to having read the whole answer.
func getAPI(ctx context.Context, target string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchKey)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s: %s", target, resp.Status, body)
	}
	return body, elapsed, nil
}

// chClient runs statements with clickhouse-client.
type chClient struct{ bin, host, port, database string }

// run executes sql and returns its output, the query time the client
// reports with --time (sending the query to receiving the last block;
// the process's own start-up is not in it) and the wall time of the
// whole process.
func (c chClient) run(ctx context.Context, sql, format string) (string, time.Duration, time.Duration, error) {
	cmd := exec.CommandContext(ctx, c.bin, "--host", c.host, "--port", c.port, "--database", c.database,
		"--time", "--format", format, "--query", sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return "", 0, 0, fmt.Errorf("clickhouse-client: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Fields(stderr.String())
	if len(lines) == 0 {
		return "", 0, 0, errors.New("clickhouse-client printed no --time")
	}
	secs, err := strconv.ParseFloat(lines[len(lines)-1], 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("clickhouse-client --time output %q: %w", stderr.String(), err)
	}
	return stdout.String(), time.Duration(secs * float64(time.Second)), wall, nil
}

// percentiles returns the nearest-rank p50 and p95 of one field.
func percentiles(samples []sample, field func(sample) time.Duration) (time.Duration, time.Duration) {
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = field(s)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.999999) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return rank(0.50), rank(0.95)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}

// accuracy prints how far the sampled reports are from exact counts: the
// aggregate and the top browsers of client 0 over rng, counted by the
// reporter's store once exactly and once reading one in k visitors.
func accuracy(ctx context.Context, store *query.Store, rng query.Range, k uint64, out io.Writer) error {
	sc, err := query.ScopeOf(&registry.Client{ID: clientID(0)})
	if err != nil {
		return err
	}
	exact := query.Params{Range: rng, Location: time.UTC}
	sampled := exact
	sampled.Sample = k
	row := func(what string, e, s float64) {
		fmt.Fprintf(out, "| %s | %s | %s | %+.2f %% |\n", what, strconv.FormatFloat(e, 'f', -1, 64), strconv.FormatFloat(s, 'f', -1, 64), (s-e)/e*100)
	}
	fmt.Fprintf(out, "\nAccuracy of one in %d against exact counts (client %s, the same range):\n\n", k, clientID(0))
	fmt.Fprintf(out, "| number | exact | sampled, scaled | error |\n| --- | ---: | ---: | ---: |\n")
	em, err := store.Aggregate(ctx, sc, exact)
	if err != nil {
		return err
	}
	sm, err := store.Aggregate(ctx, sc, sampled)
	if err != nil {
		return err
	}
	row("visitors", float64(em.Visitors), float64(sm.Visitors))
	row("visits", float64(em.Visits), float64(sm.Visits))
	row("page views", float64(em.Pageviews), float64(sm.Pageviews))
	row("events", float64(em.Events), float64(sm.Events))
	row("bounce rate, %", em.BounceRate, sm.BounceRate)
	row("mean visit duration, s", em.VisitDuration, sm.VisitDuration)
	browser, err := query.ParseDimension("browser")
	if err != nil {
		return err
	}
	eb, err := store.Breakdown(ctx, sc, exact, browser, 6)
	if err != nil {
		return err
	}
	sb, err := store.Breakdown(ctx, sc, sampled, browser, 50)
	if err != nil {
		return err
	}
	for _, e := range eb {
		var got uint64
		for _, r := range sb {
			if r.Value == e.Value {
				got = r.Visitors
			}
		}
		row(fmt.Sprintf("visitors of browser %q", e.Value), float64(e.Visitors), float64(got))
	}
	return nil
}
