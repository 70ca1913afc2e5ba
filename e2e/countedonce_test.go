package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/testclock"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// hit is one event a simulated visitor sends.
type hit struct {
	visitor int
	client  string // "shop" (cookieless) or "cookies" (cookie mode)
	id      string
	url     string
	ref     string
	name    string // custom event name; "" for a page view
	ip, ua  string
	at      time.Time
}

// body is the hit as the tracker sends it, with its own timestamp.
func (h hit) body() string {
	typ := `"url":"` + h.url + `"`
	if h.name != "" {
		typ = `"type":"custom","name":"` + h.name + `"`
	}
	ref := ""
	if h.ref != "" {
		ref = `,"referrer":"` + h.ref + `"`
	}
	return fmt.Sprintf(`{"client_id":%q,"event_id":%q,%s%s,"timestamp":%q}`, h.client, h.id, typ, ref, h.at.UTC().Format(time.RFC3339Nano))
}

// workload makes the events of 64 visitors between start and start+100
// minutes, in time order: a quarter in cookie mode, visits broken by
// silences past the session timeout and by arrivals from a search engine,
// page views and signups.
func workload(start time.Time) []hit {
	rng := rand.New(rand.NewPCG(16, 2026))
	var hits []hit
	pages := []string{"/", "/pricing", "/docs", "/blog/one", "/signup"}
	for v := range 64 {
		client := "shop"
		if v%4 == 3 {
			client = "cookies"
		}
		host := map[string]string{"shop": "shop.example", "cookies": "cookies.example"}[client]
		at := start.Add(time.Duration(rng.IntN(50)) * time.Minute)
		for i := 0; at.Before(start.Add(100 * time.Minute)); i++ {
			h := hit{visitor: v, client: client, id: fmt.Sprintf("v%02d-%03d", v, i),
				url: "https://" + host + pages[rng.IntN(len(pages))],
				ip:  fmt.Sprintf("198.51.100.%d", 10+v), ua: fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64; rv:%d.0) Gecko/20100101 Firefox/%d.0", 120+v, 120+v),
				at: at}
			switch r := rng.IntN(100); {
			case r < 6:
				h.ref = "https://www.google.com/"
			case r < 11:
				h.name = "signup"
			}
			hits = append(hits, h)
			if rng.IntN(100) < 4 {
				at = at.Add(time.Duration(35+rng.IntN(15)) * time.Minute) // the visit times out
			} else {
				at = at.Add(time.Duration(5+rng.IntN(90)) * time.Second)
			}
		}
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].at.Before(hits[j].at) })
	return hits
}

// pipelineRun is one collector, sinker and reporter and three enricher
// instances (enricher, enricher-b, enricher-c; started as the test needs)
// on topics and a database of their own. All runs share the broker, the
// salt topic and the clock, so the same hits give the same visitor ids.
type pipelineRun struct {
	*stack
	name    string
	clock   string
	broker  string
	cookies map[int]*http.Cookie // the simulated browsers' visitor cookies
}

const onceKey = "alm_e2e_once_key_0123456789abcdef"

var enrichers = []string{"enricher", "enricher-b", "enricher-c"}

func newRun(t *testing.T, broker, clock, name string, env ...string) *pipelineRun {
	t.Helper()
	instances := append([]string{"sinker", "reporter"}, enrichers...)
	instances = append(instances, "collector")
	args := map[string][]string{}
	for _, inst := range instances {
		if b := binary(inst); b == "enricher" || b == "sinker" {
			args[inst] = []string{"-group-id", name + "-" + b, "-kafka-instance-id", name + "-" + inst}
		}
	}
	env = append([]string{
		"ALUMINI_KAFKA_RAW_TOPIC=" + name + ".raw",
		"ALUMINI_KAFKA_ENRICHED_TOPIC=" + name + ".enriched",
		"ALUMINI_KAFKA_DEAD_LETTER_TOPIC=" + name + ".dead-letter",
		"ALUMINI_SESSION_TOPIC=" + name + ".sessions",
		"ALUMINI_SALT_TOPIC=e2e-once.salts",
		"ALUMINI_BATCH_MAX_WAIT=100ms",
		"ALUMINI_KAFKA_SESSION_TIMEOUT=6s",
		testclock.Env + "=" + clock,
	}, env...)
	return &pipelineRun{stack: prepareStack(t, testClients(onceKey), broker, instances, args, env...),
		name: name, clock: clock, broker: broker, cookies: map[int]*http.Cookie{}}
}

// kill SIGKILLs name: no flush, no commit, no leaving the group.
func (r *pipelineRun) kill(name string) {
	r.t.Helper()
	cmd := r.procs[name]
	delete(r.procs, name)
	if err := cmd.Process.Kill(); err != nil {
		r.t.Fatalf("killing %s: %v", name, err)
	}
	<-r.exited[name] // "signal: killed" is the point
}

// send posts h at its own time; how is "", "another address" or
// "no cookie" (a retry that lost its cookie).
func (r *pipelineRun) send(h hit, how string) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+r.ports["collector"]+"/api/event", strings.NewReader(h.body()))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.ua)
	req.Header.Set("X-Forwarded-For", h.ip)
	if how == "another address" {
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", 10+h.visitor))
	}
	if h.client == "cookies" {
		req.Header.Set("Origin", "https://cookies.example")
		if c := r.cookies[h.visitor]; c != nil && how != "no cookie" {
			req.AddCookie(c)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("%s: POST %s = %d %s; want 202", r.name, h.body(), resp.StatusCode, b)
	}
	if how == "" && r.cookies[h.visitor] == nil {
		for _, c := range resp.Cookies() {
			r.cookies[h.visitor] = c
		}
	}
}

func (r *pipelineRun) setClock(at time.Time) {
	r.t.Helper()
	if err := testclock.Set(r.clock, at); err != nil {
		r.t.Fatal(err)
	}
}

// waitStored waits until the events table holds n event ids.
func (r *pipelineRun) waitStored(n uint64) {
	r.t.Helper()
	var got uint64
	if eventually.Within(90*time.Second, func() bool {
		if err := r.db.QueryRow(context.Background(), "SELECT uniqExact(event_id) FROM events").Scan(&got); err != nil {
			r.t.Fatal(err)
		}
		return got == n
	}) {
		return
	}
	r.t.Fatalf("%s: %d event ids stored within 90s; want %d. Sinker log:\n%s", r.name, got, n, r.log("sinker"))
}

// waitCaughtUp waits until group has committed every record of topic.
func (r *pipelineRun) waitCaughtUp(group, topic string) {
	r.t.Helper()
	adm := r.admClient()
	if eventually.Within(90*time.Second, func() bool {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			r.t.Fatal(err)
		}
		committed, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		behind := false
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(topic, o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset) {
				behind = true
			}
		})
		return !behind
	}) {
		return
	}
	r.t.Fatalf("%s: group %s did not catch up with %s within 90s", r.name, group, topic)
}

func (r *pipelineRun) admClient() *kadm.Client {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.broker))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// outcome is what a run leaves: every stored row under FINAL by event id,
// every enriched record by event id, the rows under FINAL, and the reports.
type outcome struct {
	rows     map[string]string
	final    uint64
	enriched map[string][]*aluminiv1.Event
	reports  map[string]string
}

func (r *pipelineRun) outcome() outcome {
	r.t.Helper()
	o := outcome{rows: map[string]string{}, enriched: map[string][]*aluminiv1.Event{}, reports: map[string]string{}}
	rows, err := r.db.Query(context.Background(), "SELECT * FROM events FINAL")
	if err != nil {
		r.t.Fatal(err)
	}
	types := rows.ColumnTypes()
	idCol := slices.IndexFunc(types, func(c driver.ColumnType) bool { return c.Name() == "event_id" })
	for rows.Next() {
		vals := make([]any, len(types))
		for i, c := range types {
			vals[i] = reflect.New(c.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			r.t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			fmt.Fprintf(&b, "%s=%v ", types[i].Name(), reflect.ValueOf(v).Elem().Interface())
		}
		// Two rows of one event id (counted in final) keep the last.
		o.rows[*vals[idCol].(*string)] = b.String()
		o.final++
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	rows.Close()
	topic := r.name + ".enriched"
	for _, m := range kafkatest.ReadAll(r.t, r.broker, topic, int(kafkatest.Count(r.t, r.broker, topic)), 30*time.Second) {
		var ev aluminiv1.Event
		if err := proto.Unmarshal(m.Value, &ev); err != nil {
			r.t.Fatal(err)
		}
		o.enriched[ev.EventId] = append(o.enriched[ev.EventId], &ev)
	}
	for name, q := range map[string]string{
		"aggregate":         "/api/v1/stats/aggregate?goal=signup",
		"timeseries":        "/api/v1/stats/timeseries?interval=hour",
		"breakdown page":    "/api/v1/stats/breakdown?dimension=page",
		"breakdown source":  "/api/v1/stats/breakdown?dimension=source",
		"breakdown browser": "/api/v1/stats/breakdown?dimension=browser_version",
		"funnel":            "/api/v1/stats/funnel?step=page:/&step=page:/pricing&step=event:signup&window=1h",
	} {
		for _, key := range []string{onceKey, onceKey + "-cookies"} {
			period := "&period=custom&from=" + onceDay.Format(time.DateOnly) + "&to=" + onceDay.AddDate(0, 0, 1).Format(time.DateOnly) + "&tz=UTC"
			status, b := r.get(key, q+period)
			if status != http.StatusOK {
				r.t.Fatalf("%s: GET %s = %d %s", r.name, q, status, b)
			}
			o.reports[name+" "+key[len(onceKey):]] = string(b)
		}
	}
	return o
}

// differences lists how b differs from the baseline a; resent are the
// event ids deliberately sent again, whose later copies may differ.
func differences(a, b outcome, resent map[string]bool) []string {
	var out []string
	if b.final != uint64(len(a.rows)) {
		out = append(out, fmt.Sprintf("%d rows under FINAL; want %d, one per event id", b.final, len(a.rows)))
	}
	for id, row := range a.rows {
		if b.rows[id] != row {
			out = append(out, fmt.Sprintf("row of %s:\n  %s\nwant\n  %s", id, b.rows[id], row))
		}
	}
	for id := range b.rows {
		if _, ok := a.rows[id]; !ok {
			out = append(out, "extra row "+id)
		}
	}
	for id, copies := range b.enriched {
		want := a.enriched[id][0]
		for _, ev := range copies {
			if !resent[id] && !proto.Equal(ev, want) {
				out = append(out, fmt.Sprintf("enriched copy of %s: %v; want %v", id, ev, want))
			}
		}
	}
	for name, body := range a.reports {
		if b.reports[name] != body {
			out = append(out, fmt.Sprintf("report %s: %s; want %s", name, b.reports[name], body))
		}
	}
	return out
}

// onceDay is the UTC day the workload starts on: it runs from 23:00 to
// 00:40 the next day, on the services' test clock.
var onceDay = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)

// TestCountedOnceUnderReplayRetriesAndRebalances is the proof.
// The same 2,400-odd events of 64 visitors (a quarter in cookie mode),
// with visits crossing the session timeout and midnight UTC on the
// services' test clock, stream through collector, enricher and sinker
// three times, into topics and a database of their own each time:
//
//  1. the baseline, one enricher, nothing going wrong;
//  2. three enrichers joining mid-stream (rebalances), two of them
//     SIGKILLed at random points and restarted; then 5 % of the cookieless
//     events sent again from another address and 5 % of the cookie-mode
//     events sent again without their cookie; then a committed range of the
//     raw topic replayed (the group's offset of a partition moved back).
//     Every stored row (all columns) equals the baseline's for its event
//     id, one row per event id under FINAL, every enriched record of an
//     event not deliberately resent equals the baseline's (so the enricher
//     gave the same answer through kills, rebalances and the replay), and
//     the aggregate, time series, breakdown and funnel answers are equal;
//  3. the negative control: the resends again, with the sinker's copy
//     filter shrunk to one record: the run must differ from the baseline.
//
// The resends go after their originals were stored: the copy that wins is
// the first in the enriched topic (docs/DESIGN.md), and a copy sent at the
// same time could be enriched first while the original's enricher is
// being killed.
func TestCountedOnceUnderReplayRetriesAndRebalances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the services three times")
	}
	_, broker := kafkatest.Start(t)
	clock := filepath.Join(t.TempDir(), "clock")
	start := onceDay.Add(23 * time.Hour)
	hits := workload(start)
	end := hits[len(hits)-1].at
	if !end.After(onceDay.AddDate(0, 0, 1)) || !start.Before(onceDay.AddDate(0, 0, 1)) {
		t.Fatalf("the workload runs %v to %v; want it across midnight", start, end)
	}
	rng := rand.New(rand.NewPCG(7, 16))
	resent := map[string]string{} // event id → how
	for _, h := range hits {
		if rng.IntN(100) < 5 {
			resent[h.id] = map[string]string{"shop": "another address", "cookies": "no cookie"}[h.client]
		}
	}
	resentIDs := map[string]bool{}
	for id := range resent {
		resentIDs[id] = true
	}

	stream := func(r *pipelineRun, during func(i int)) {
		t.Helper()
		for i, h := range hits {
			if during != nil {
				during(i)
			}
			r.setClock(h.at)
			r.send(h, "")
		}
	}
	resend := func(r *pipelineRun) {
		t.Helper()
		r.setClock(end.Add(time.Minute))
		for _, h := range hits {
			if how := resent[h.id]; how != "" {
				r.send(h, how)
			}
		}
	}
	base := func(r *pipelineRun) {
		t.Helper()
		r.setClock(start)
		for _, name := range []string{"sinker", "reporter", "enricher", "collector"} {
			r.start(name)
		}
	}

	// 1. The baseline.
	one := newRun(t, broker, clock, "once1")
	base(one)
	stream(one, nil)
	one.waitStored(uint64(len(hits)))
	one.waitCaughtUp("once1-sinker", "once1.enriched")
	want := one.outcome()
	one.stopAll()
	if len(want.rows) != len(hits) {
		t.Fatalf("baseline stored %d events; want %d", len(want.rows), len(hits))
	}

	// 2. Rebalances, kills, resends and a replay.
	two := newRun(t, broker, clock, "once2")
	base(two)
	n := len(hits)
	stream(two, func(i int) {
		switch i {
		case n / 10:
			two.start("enricher-b")
		case n / 4:
			two.start("enricher-c")
		case n * 2 / 5, n * 7 / 10:
			victim := enrichers[rng.IntN(len(enrichers))]
			two.kill(victim)
			two.start(victim)
		}
	})
	two.waitStored(uint64(n))
	resend(two)
	two.waitCaughtUp("once2-enricher", "once2.raw")
	two.waitCaughtUp("once2-sinker", "once2.enriched")
	for _, name := range enrichers {
		two.stop(name)
	}
	adm := two.admClient()
	var back kadm.Offsets
	back.Add(kadm.Offset{Topic: "once2.raw", Partition: 0, At: 0, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(context.Background(), "once2-enricher", back); err != nil || resp.Error() != nil {
		t.Fatalf("moving the enricher group back to replay partition 0: %v, %v", err, resp.Error())
	}
	two.start("enricher")
	two.waitCaughtUp("once2-enricher", "once2.raw")
	two.waitCaughtUp("once2-sinker", "once2.enriched")
	got := two.outcome()
	if len(got.enriched) != len(want.enriched) || kafkatest.Count(t, broker, "once2.enriched") <= kafkatest.Count(t, broker, "once1.enriched")+int64(len(resent)) {
		t.Errorf("run 2's enriched topic holds %d records for %d events, run 1's %d: the replay made no copies", kafkatest.Count(t, broker, "once2.enriched"), len(got.enriched), kafkatest.Count(t, broker, "once1.enriched"))
	}
	for _, d := range differences(want, got, resentIDs) {
		t.Error(d)
	}
	t.Logf("%d events (%d resent); enriched records: baseline %d, run 2 %d", n, len(resent),
		kafkatest.Count(t, broker, "once1.enriched"), kafkatest.Count(t, broker, "once2.enriched"))
	two.stopAll()

	// 3. The negative control: no copy filter to speak of.
	three := newRun(t, broker, clock, "once3", "ALUMINI_COPY_WINDOW=1")
	base(three)
	stream(three, nil)
	three.waitStored(uint64(n))
	resend(three)
	three.waitCaughtUp("once3-enricher", "once3.raw")
	three.waitCaughtUp("once3-sinker", "once3.enriched")
	d := differences(want, three.outcome(), resentIDs)
	if len(d) == 0 {
		t.Error("with a copy window of one record the resends made no difference: the test cannot see what the filter does")
	}
	t.Logf("negative control: %d differences, the first: %.300s", len(d), d[0])
}
