package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/aluminiapp/pipeline/lib/chromiumtest"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
)

// sdkDir holds the official SDKs, pinned in package-lock.json and
// installed by deploy/deps.sh (npm ci --prefix e2e/sdk).
const sdkDir = "sdk"

// sdkRun is what one SDK sent and was answered.
type sdkRun struct {
	SDK     string   `json:"sdk"`
	Version string   `json:"version"`
	IDs     []string `json:"ids"`
	Answers []struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"answers"`
	Errors  []string `json:"errors"`
	Batches []struct {
		Messages, Bytes int
	} `json:"batches"`
}

func (r sdkRun) String() string {
	b, _ := json.Marshal(struct { // marshalling strings and ints cannot fail.
		Answers any `json:"collector_answers"`
		Errors  any `json:"sdk_errors"`
	}{r.Answers, r.Errors})
	return fmt.Sprintf("%s %s (%d message ids): %s", r.SDK, r.Version, len(r.IDs), b)
}

func requireSDKs(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing (deploy/deps.sh installs nodejs): %v", err)
	}
	for _, pkg := range []string{"@segment/analytics-node", "@rudderstack/rudder-sdk-node", "@segment/analytics-next"} {
		if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed: run deploy/deps.sh (npm ci --prefix e2e/sdk): %v", pkg, err)
		}
	}
	return node
}

// TestOfficialSDKs sends events through Segment's and RudderStack's
// official SDKs, unmodified, from Node and from headless Chromium, to the
// built collector, and finds every message id each SDK made in ClickHouse
// exactly once. Each SDK's first request meets a 503, as while Kafka is
// down, and must be retried.
func TestOfficialSDKs(t *testing.T) {
	node := requireSDKs(t)
	s := newStack(t, "alm_e2e_sdk_key_0123456789abcdef")

	var runs []sdkRun
	// 600 messages of ~800 bytes fill the Node SDKs' batches to their byte
	// limits (480 KB, 450 KB), past 500 messages.
	for _, sdk := range []string{"analytics-node", "rudder-sdk-node"} {
		collector := unavailableFirst(t, s.ports["collector"])
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, err := exec.CommandContext(ctx, node, filepath.Join(sdkDir, "send.js"), sdk, collector, "wk_shop", "600").Output()
		cancel()
		var run sdkRun
		if jerr := json.Unmarshal(out, &run); err != nil || jerr != nil {
			t.Fatalf("%s: node send.js: %v %v; output %s\ncollector log:\n%s", sdk, err, jerr, out, s.log("collector"))
		}
		checkRun(t, run, 602)
		largest := 0
		for _, b := range run.Batches {
			largest = max(largest, b.Messages)
		}
		if largest <= 500 {
			t.Errorf("%s: largest batch %d messages; want the SDK to fill one past 500 (batches %v)", sdk, largest, run.Batches)
		}
		t.Logf("%s %s batches (messages, JSON bytes): %v", sdk, run.Version, run.Batches)
		runs = append(runs, run)
	}
	const browserCalls = 20
	browser := analyticsNext(t, unavailableFirst(t, s.ports["collector"]), browserCalls)
	runs = append(runs, browser.run()) // its ids; the answers are checked below

	total := 0
	for _, r := range runs {
		total += len(distinct(r.IDs))
	}
	got := waitForEventIDs(t, s, "shop", total, 60*time.Second)
	sent := map[string]bool{}
	for _, r := range runs {
		var wrong []string
		for _, id := range r.IDs {
			sent[id] = true
			if n := got[id]; n != 1 {
				wrong = append(wrong, fmt.Sprintf("%s stored %d times", id, n))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("%d of the messages %s sent are not stored exactly once (first: %s). %s", len(wrong), r.SDK, wrong[0], r)
		}
	}
	for id, n := range got {
		if !sent[id] {
			t.Errorf("ClickHouse holds %d rows of event %s, which no SDK sent", n, id)
		}
	}
	// Every message is stored, so every request was answered: the
	// browser's record of the answers is complete.
	checkRun(t, browser.run(), 2*(browserCalls+2))
	browser.mu.Lock()
	if len(browser.outside) > 0 {
		t.Errorf("analytics-next fetched from outside the test: %v", browser.outside)
	}
	browser.mu.Unlock()
	if t.Failed() {
		t.Logf("collector log:\n%s", s.log("collector"))
	}
}

func distinct(ids []string) []string { return slices.Compact(slices.Sorted(slices.Values(ids))) }

// checkRun fails the test unless the SDK made n distinct message ids, had
// no errors, and was answered 200 every time but once (the 503 of
// unavailableFirst, which it retried).
func checkRun(t *testing.T, r sdkRun, n int) {
	t.Helper()
	if d := distinct(r.IDs); len(d) != n || len(r.Errors) > 0 || len(r.Answers) < 2 {
		t.Errorf("%s: %d distinct message ids; want %d, no errors, a 503 and a retry", r, len(d), n)
		return
	}
	unavailable := 0
	for _, a := range r.Answers {
		switch a.Status {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			t.Errorf("%s: the collector answered %d %s; want 200", r, a.Status, a.Body)
		}
	}
	if unavailable != 1 {
		t.Errorf("%s: %d answers were 503; want exactly the one the test made", r, unavailable)
	}
}

// unavailableFirst is a proxy to the collector at addr that answers the
// first POST itself with the collector's 503 (as while Kafka is down,
// with Retry-After and, for browsers, CORS headers) and passes on
// everything else. It returns the proxy's URL.
func unavailableFirst(t *testing.T, addr string) string {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: addr}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var failed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && failed.CompareAndSwap(false, true) {
			if o := r.Header.Get("Origin"); o != "" {
				w.Header().Set("Access-Control-Allow-Origin", o)
			}
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"the events could not be stored right now; retry with the same event_id"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// waitForEventIDs polls the stack's ClickHouse database until the client
// has n distinct event ids (or the time is up) and returns the rows per id.
func waitForEventIDs(t *testing.T, s *stack, client string, n int, within time.Duration) map[string]int {
	t.Helper()
	var database string
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, "ALUMINI_CLICKHOUSE_DATABASE="); ok {
			database = v
		}
	}
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chtest.Addr()}, Auth: clickhouse.Auth{Database: database}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ch.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got map[string]int
	eventually.Within(within, func() bool {
		rows, err := ch.Query(context.Background(), "SELECT event_id, count() FROM events WHERE client_id = ? GROUP BY event_id", client)
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]int{}
		for rows.Next() {
			var id string
			var c uint64
			if err := rows.Scan(&id, &c); err != nil {
				t.Fatal(err)
			}
			got[id] = int(c)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return len(got) >= n
	})
	return got
}

// sendAllResult is what the test page's sendAll resolves to.
type sendAllResult struct {
	Version string   `json:"version"`
	IDs     []string `json:"ids"`
	Failed  []string `json:"failed"`
}

// browserRun is what analytics-next in Chromium sent; the answers keep
// arriving while the batching instance sends.
type browserRun struct {
	mu      sync.Mutex
	r       sdkRun
	outside []string // URLs fetched from neither the test page nor the collector
}

func (b *browserRun) run() sdkRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.r
	r.Answers = slices.Clone(r.Answers)
	return r
}

// analyticsNext loads Segment's browser library from its npm package on a
// test page in headless Chromium, pointed at the collector, and sends
// count track calls, a page and an identify call per delivery strategy.
func analyticsNext(t *testing.T, collector string, count int) *browserRun {
	t.Helper()
	umd := http.StripPrefix("/analytics-next/bundles/", http.FileServer(http.Dir(filepath.Join(sdkDir, "node_modules", "@segment", "analytics-next", "dist", "umd"))))
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/analytics-next/bundles/") {
			umd.ServeHTTP(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(sdkDir, "analytics-next.html"))
	}))
	t.Cleanup(site.Close)
	// The page is served as shop's own site, http://shop.example:<port>,
	// so the collector's check of shop's domains and CORS with
	// credentials are part of the test.
	page := strings.Replace(site.URL, "127.0.0.1", "shop.example", 1)

	// The browser stays open until the test ends: the batching instance
	// sends its last batch after sendAll resolved.
	ctx := chromiumtest.Start(t, chromedp.Flag("host-resolver-rules", "MAP shop.example 127.0.0.1"),
		chromedp.Flag("disable-features", "HttpsUpgrades"))

	b := &browserRun{r: sdkRun{SDK: "analytics-next"}}
	// Listen needs the tab: the first Navigate makes it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			// Everything must stay on the test page and the collector: no
			// settings or code from Segment's CDN.
			if u := ev.Request.URL; !strings.HasPrefix(u, page) && !strings.HasPrefix(u, collector) && !strings.HasPrefix(u, "data:") {
				b.outside = append(b.outside, u)
			}
		case *network.EventResponseReceived:
			if strings.HasPrefix(ev.Response.URL, collector) && ev.Type != network.ResourceTypePreflight {
				b.r.Answers = append(b.r.Answers, struct {
					Status int    `json:"status"`
					Body   string `json:"body"`
				}{int(ev.Response.Status), ev.Response.URL})
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(collector, "http://")
	if err := chromedp.Do(ctx, chromedp.Navigate(page+"/")); err != nil {
		t.Fatalf("analytics-next test page: %v", err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[sendAllResult](fmt.Sprintf(`sendAll(%q, "wk_shop", %d)`, host, count), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("analytics-next in chromium: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.r.Version, b.r.IDs, b.r.Errors = out.Version, out.IDs, out.Failed
	return b
}
