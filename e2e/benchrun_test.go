package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aluminiapp/pipeline/e2e/internal/traffic"
	"github.com/aluminiapp/pipeline/lib/eventually"
)

// Ids of the benchmark's events ("b-" and a sequence number) and of its
// marker events ("m-" and theirs), each under a client of its own so that
// looking markers up reads little.
const (
	benchIDPrefix  = "b-"
	markerIDPrefix = "m-"
)

// offer runs the load, then waits until every accepted event is stored
// (or nothing more is stored for -drain), sampling the pipeline meanwhile.
func (b *benchRun) offer(corpus *traffic.Corpus) *benchResult {
	t := b.t
	batch := *benchBatch
	reqRate := *benchRate / float64(batch)
	n := int(reqRate * benchFor.Seconds())
	if batch < 1 || n < 1 {
		t.Fatalf("-rate %v, -batch %d, -for %v: no request to send", *benchRate, batch, *benchFor)
	}
	res := &benchResult{latencies: make([]time.Duration, n), counters: map[string][2]float64{}}
	l := newLoad(b, res, corpus, n*batch)

	// Every process's CPU while idle (a shared ClickHouse serves others),
	// then the load.
	const idleFor = 2 * time.Second
	idleStart := b.cpu()
	time.Sleep(idleFor) // a measurement window, not a wait for a condition.
	res.cpuStart, res.idleFor, res.waitStart = b.cpu(), idleFor, b.waits()
	res.idleCPU = map[string]time.Duration{}
	for proc, d := range res.cpuStart {
		res.idleCPU[proc] = d - idleStart[proc]
	}
	b.readCounters(res, 0)
	res.start = time.Now()

	mk := newMarkers(b, l.client)
	ctx, stopMarkers := context.WithCancel(context.Background())
	stopPoll, stopSampling := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { mk.send(ctx) })
	wg.Go(func() { mk.poll(stopPoll) })
	wg.Go(func() { b.sampleEverySecond(res, l, stopSampling) })

	traffic.Offer(context.Background(), res.start, time.Duration(float64(time.Second)/reqRate), n, *benchConns, l.send)
	res.sendEnd = time.Now()
	stopMarkers()
	res.requests, res.rejected, res.failed = l.requests.Load(), l.rejected.Load(), l.failed.Load()
	res.sentEvents, res.acceptedEvents = l.sentEvents.Load(), l.acceptedEvents.Load()

	b.drain(res, int64(mk.acceptedCount()))
	res.cpuEnd, res.waitEnd = b.cpu(), b.waits()
	close(stopSampling)
	// The timeline ends with the moment the last event was found.
	last := b.sample(res.start)
	last.sent, last.accepted = res.sentEvents, res.acceptedEvents
	b.readInstances(res, res.acceptedEvents+int64(mk.acceptedCount()))
	// The poller looks every 100 ms: give it the time to see the last ones.
	eventually.Within(5*time.Second, mk.allSeen)
	close(stopPoll)
	wg.Wait()
	res.samples = append(res.samples, last)
	res.markers = mk.list()
	b.account(res, l.accepted, mk)
	return res
}

// benchLoad sends the benchmark's requests and counts their answers.
type benchLoad struct {
	b        *benchRun
	res      *benchResult
	client   *http.Client
	gens     chan *traffic.Generator // one per sender
	accepted *acceptedSet

	sentEvents, acceptedEvents, requests, rejected, failed atomic.Int64
}

func newLoad(b *benchRun, res *benchResult, corpus *traffic.Corpus, events int) *benchLoad {
	l := &benchLoad{b: b, res: res, accepted: newAcceptedSet(events),
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: *benchConns, MaxConnsPerHost: *benchConns},
			Timeout:   30 * time.Second,
		},
		gens: make(chan *traffic.Generator, *benchConns),
	}
	for i := range *benchConns {
		l.gens <- traffic.NewGenerator(traffic.Config{Client: "bench", Site: "bench.example", Visitors: *benchVisitors,
			Unseen: *benchUnseen, Batch: *benchBatch, IDPrefix: benchIDPrefix}, corpus, uint64(i))
	}
	return l
}

// send posts request i, due at due, to a collector (round robin) and
// records the ids of the events a 2xx accepted.
func (l *benchLoad) send(i int, due time.Time) {
	g := <-l.gens
	defer func() { l.gens <- g }()
	batch := *benchBatch
	req, err := g.Next(uint64(i * batch))
	if err != nil {
		l.failed.Add(1)
		l.res.firstErr.CompareAndSwap(nil, err.Error())
		return
	}
	l.sentEvents.Add(int64(batch))
	l.requests.Add(1)
	collector := l.b.s.ports[l.b.collectors[i%len(l.b.collectors)]]
	status, body, err := post(l.client, "http://"+collector+req.Path, req)
	l.res.latencies[i] = time.Since(due)
	switch {
	case err != nil || status >= 500:
		l.failed.Add(1)
		l.res.firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", status, body, err))
		return
	case status >= 400:
		l.rejected.Add(1)
		l.res.firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", status, body))
		return
	}
	ids, err := acceptedIDs(body)
	if err != nil {
		l.failed.Add(1)
		l.res.firstErr.CompareAndSwap(nil, err.Error())
	}
	for _, id := range ids {
		if seq, ok := strings.CutPrefix(id, benchIDPrefix); ok {
			if n, err := strconv.ParseUint(seq, 10, 64); err == nil && l.accepted.holds(n) {
				l.accepted.add(n)
				l.acceptedEvents.Add(1)
			}
		}
	}
}

// sampleEverySecond appends a sample to res every second until stop.
func (b *benchRun) sampleEverySecond(res *benchResult, l *benchLoad, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		// Counted before the slower queries of sample, so that the row
		// shows one moment.
		sent, accepted := l.sentEvents.Load(), l.acceptedEvents.Load()
		smp := b.sample(res.start)
		smp.sent, smp.accepted = sent, accepted
		res.samples = append(res.samples, smp) // read only after stop and the goroutine's end.
	}
}

// readInstances reads, once the run is over, each instance's throughput
// counter, GOMAXPROCS and partitions.
func (b *benchRun) readInstances(res *benchResult, want int64) {
	// A sinker counts its rows once the insert returned, a moment after
	// they became visible: read the counters once every stage counted all.
	eventually.Within(5*time.Second, func() bool {
		b.readCounters(res, 1)
		done := map[string]float64{}
		for name, c := range res.counters {
			done[b.stageOf[name]] += c[1] - c[0]
		}
		return done["collector"] >= float64(want) && done["enricher"] >= float64(want) && done["sinker"] >= float64(want)
	})
	// The Go runtime's own view of its cores, which pinning lowers.
	res.gomaxprocs = map[string]int{}
	for _, name := range b.instances {
		if n, err := scrapeSum("http://"+b.s.admin[name]+"/metrics", "go_sched_gomaxprocs_threads"); err == nil && n > 0 {
			res.gomaxprocs[name] = int(n)
		}
	}
	res.partitions = map[string]map[string]int{}
	for _, stage := range []string{"enricher", "sinker"} {
		res.partitions[stage] = b.assignment("alumini-" + stage)
	}
}

func post(client *http.Client, url string, r traffic.Request) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	if r.IP != "" {
		req.Header.Set("X-Forwarded-For", r.IP)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// acceptedIDs reads the event ids of a 2xx answer of /api/event or
// /api/batch.
func acceptedIDs(body []byte) ([]string, error) {
	var answer struct {
		EventID  string   `json:"event_id"`
		EventIDs []string `json:"event_ids"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("2xx answer %q: %w", body, err)
	}
	if answer.EventID != "" {
		return []string{answer.EventID}, nil
	}
	return answer.EventIDs, nil
}

// drain waits until ClickHouse holds as many of the benchmark's events as
// were accepted, or until nothing more was stored for -drain.
func (b *benchRun) drain(res *benchResult, markers int64) {
	want := res.acceptedEvents + markers
	last, lastChange := int64(-1), time.Now()
	for {
		stored, err := b.storedCount()
		switch {
		case err != nil:
			b.t.Logf("counting stored events: %v", err)
		case stored >= want:
			res.storedEnd = time.Now()
			return
		case stored != last:
			last, lastChange = stored, time.Now()
		case time.Since(lastChange) > *benchDrain:
			b.t.Logf("%d of %d accepted events stored, none more for %v: giving up", stored, want, *benchDrain)
			res.storedEnd = lastChange
			return
		}
		// Polling ClickHouse, the only way to see rows arrive; the
		// interval bounds how late the end of the run is seen. A fixed
		// interval, not lib/eventually: this measures when the last row
		// arrived (eventually's backoff to 200ms would coarsen it), and it
		// gives up on a stall, not at a deadline.
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *benchRun) storedCount() (int64, error) {
	var n uint64
	err := b.s.db.QueryRow(context.Background(), "SELECT count() FROM events WHERE client_id IN ('bench', 'marker')").Scan(&n)
	return int64(n), err
}

// sample reads what was stored, the consumer groups' lag and every
// process's CPU time.
func (b *benchRun) sample(start time.Time) sample {
	s := sample{at: time.Since(start), cpu: b.cpu(), rawLag: -1, enrichedLag: -1}
	if n, err := b.storedCount(); err == nil {
		s.stored = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lags, err := b.adm.Lag(ctx, "alumini-enricher", "alumini-sinker")
	if err != nil {
		return s
	}
	for group, l := range lags {
		var total int64
		for _, parts := range l.Lag {
			for _, p := range parts {
				if p.Lag > 0 {
					total += p.Lag
				}
			}
		}
		if group == "alumini-enricher" {
			s.rawLag = total
		} else {
			s.enrichedLag = total
		}
	}
	return s
}

// throughputCounter is the counter of each stage that counts the events
// an instance passed on.
var throughputCounter = map[string]string{
	"collector": "alumini_collector_events_accepted_total",
	"enricher":  "alumini_enricher_events_in_total",
	"sinker":    "alumini_sinker_rows_inserted_total",
}

// readCounters reads each instance's throughput counter from its /metrics
// into res.counters[instance][at].
func (b *benchRun) readCounters(res *benchResult, at int) {
	for _, name := range b.instances {
		v, err := scrapeSum("http://"+b.s.admin[name]+"/metrics", throughputCounter[b.stageOf[name]])
		if err != nil {
			b.t.Logf("reading %s's metrics: %v", name, err)
			continue
		}
		c := res.counters[name]
		c[at] = v
		res.counters[name] = c
	}
}

// scrapeSum is the sum of the samples of one metric at url.
func scrapeSum(url, metric string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	var sum float64
	if f, ok := families[metric]; ok {
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum, nil
}

// account compares what ClickHouse holds with what was accepted: every
// 2xx'd id stored, no id stored that was never sent, one row per id under
// FINAL (what reports count), and how many ids have more than one row
// before ClickHouse merges them.
func (b *benchRun) account(res *benchResult, accepted *acceptedSet, mk *markers) {
	ctx := context.Background()
	rows, err := b.s.db.Query(ctx, "SELECT event_id, count() FROM events WHERE client_id IN ('bench', 'marker') GROUP BY event_id")
	if err != nil {
		b.t.Fatalf("reading stored ids: %v", err)
	}
	defer rows.Close()
	found := newAcceptedSet(len(accepted.words) * 64)
	var foundMarkers, foundAccepted int64
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			b.t.Fatal(err)
		}
		res.distinct++
		res.stored += int64(n)
		if n > 1 {
			res.doubled++
		}
		if seq, ok := strings.CutPrefix(id, benchIDPrefix); ok {
			if n, err := strconv.ParseUint(seq, 10, 64); err == nil && accepted.holds(n) {
				if accepted.has(n) && !found.has(n) {
					foundAccepted++
				}
				found.add(n)
				continue
			}
		} else if k, ok := strings.CutPrefix(id, markerIDPrefix); ok {
			if n, err := strconv.Atoi(k); err == nil && mk.isAccepted(n) {
				foundMarkers++
				continue
			} else if err == nil && n < mk.sentCount() {
				continue // sent, answered other than 2xx, stored anyway
			}
		}
		res.unknown++
	}
	if err := rows.Err(); err != nil {
		b.t.Fatal(err)
	}
	res.missing = res.acceptedEvents - foundAccepted + int64(mk.acceptedCount()) - foundMarkers
	var final uint64
	if err := b.s.db.QueryRow(ctx, "SELECT count() FROM events FINAL WHERE client_id IN ('bench', 'marker')").Scan(&final); err != nil {
		b.t.Fatal(err)
	}
	res.finalRows = int64(final)
}

// markers are single events sent at -markers per second beside the load;
// their freshness is the time from the collector's 2xx to the moment a
// query finds them.
type markers struct {
	b      *benchRun
	client *http.Client
	mu     sync.Mutex
	sent   int
	all    map[int]*marker // accepted ones, by number
}

func newMarkers(b *benchRun, client *http.Client) *markers {
	return &markers{b: b, client: client, all: map[int]*marker{}}
}

func (m *markers) send(ctx context.Context) {
	if *benchMarkers <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / *benchMarkers))
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.mu.Lock()
		m.sent = k + 1
		m.mu.Unlock()
		body := fmt.Sprintf(`{"client_id":"marker","event_id":"%s%d","url":"https://bench.example/marker"}`, markerIDPrefix, k)
		collector := m.b.s.ports[m.b.collectors[k%len(m.b.collectors)]]
		status, _, err := post(m.client, "http://"+collector+"/api/event", traffic.Request{Body: []byte(body)})
		if err == nil && status/100 == 2 {
			m.mu.Lock()
			m.all[k] = &marker{accepted: time.Now()}
			m.mu.Unlock()
		}
	}
}

// poll looks for accepted markers not yet seen every 100 ms until stop.
func (m *markers) poll(stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if m.allSeen() {
			continue
		}
		// Every marker id: a few per second of the run, in a key range of
		// their own, cheaper than binding the pending ones.
		rows, err := m.b.s.db.Query(context.Background(), "SELECT event_id FROM events WHERE client_id = 'marker'")
		if err != nil {
			m.b.t.Logf("looking for markers: %v", err)
			continue
		}
		now := time.Now()
		m.mu.Lock()
		for rows.Next() {
			var id string
			if rows.Scan(&id) != nil {
				continue
			}
			if k, err := strconv.Atoi(strings.TrimPrefix(id, markerIDPrefix)); err == nil && m.all[k] != nil && m.all[k].stored.IsZero() {
				m.all[k].stored = now
			}
		}
		m.mu.Unlock()
		rows.Close()
	}
}

func (m *markers) allSeen() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mk := range m.all {
		if mk.stored.IsZero() {
			return false
		}
	}
	return true
}

func (m *markers) acceptedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.all)
}

func (m *markers) sentCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent
}

func (m *markers) isAccepted(k int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.all[k] != nil
}

func (m *markers) list() []marker {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]marker, 0, len(m.all))
	for _, mk := range m.all {
		out = append(out, *mk)
	}
	return out
}
