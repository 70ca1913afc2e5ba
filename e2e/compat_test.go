package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aluminiapp/pipeline/lib/chromiumtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
)

const (
	// compatDir holds the trackers, unmodified, at the versions its
	// package-lock.json pins (deploy/deps.sh installs them).
	compatDir  = "compat"
	umamiSite  = "3f6b2a5e-8c1d-4e7a-9b0c-5d2e1f4a6b7c"
	desktopUA  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	compatKeys = "alm_e2e_compat_key_0123456789abcdef"
)

// compatTrackers makes sure the npm trackers are installed, as
// deploy/deps.sh does on a fresh machine.
func compatTrackers(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumtest.Path); err != nil {
		t.Fatalf("%s is missing (deploy/deps.sh installs it): %v", chromiumtest.Path, err)
	}
	if _, err := os.Stat(filepath.Join(compatDir, "node_modules", "umami-tracker", "index.js")); err == nil {
		return
	}
	for _, cmd := range [][]string{
		{"npm", "ci", "--prefix", compatDir, "--no-audit", "--no-fund", "--loglevel=error"},
		{filepath.Join(compatDir, "fetch-umami-tracker.sh")},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
}

// compatBrowser starts headless Chromium with a desktop browser's user
// agent (headless Chromium's own is flagged as a bot; its client hints
// still name it Chromium), the test sites'
// names resolving to loopback, and Do Not Track on when dnt.
func compatBrowser(t *testing.T, dnt bool) context.Context {
	t.Helper()
	dir := t.TempDir()
	if dnt {
		if err := os.MkdirAll(filepath.Join(dir, "Default"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Default", "Preferences"), []byte(`{"enable_do_not_track": true}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The profile folder is set again after chromiumtest's own: the later
	// flag wins, and this one holds the Do Not Track preference.
	return chromiumtest.Start(t,
		chromedp.Flag("host-resolver-rules", "MAP plausible.example 127.0.0.1, MAP umami.example 127.0.0.1"),
		chromedp.UserAgent(desktopUA),
		chromedp.UserDataDir(dir),
	)
}

// compatSites serves the pages of plausible.example (Plausible's npm
// library, as a site bundles it) and umami.example (Umami's tracker
// script), both sending to the collector, and returns the port.
func compatSites(t *testing.T, collector string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/plausible.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, filepath.Join(compatDir, "node_modules", "@plausible-analytics", "tracker", "plausible.js"))
	})
	mux.HandleFunc("/umami.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, filepath.Join(compatDir, "node_modules", "umami-tracker", "index.js"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		host, _, _ := net.SplitHostPort(r.Host)
		switch host {
		case "plausible.example":
			// __plausible: Plausible's own switch to track in a browser
			// driven by automation, which it otherwise ignores.
			fmt.Fprintf(w, `<!doctype html><html><head><title>Plausible page</title></head><body><h1>P</h1>
<script type="module">
import { init, track } from '/plausible.js';
window.__plausible = true;
init({ domain: 'plausible.example', endpoint: 'http://%s/api/event' });
window.sendEvent = (name, opts) => new Promise(done => track(name, { ...opts, callback: done }));
</script></body></html>`, collector)
		case "umami.example":
			fmt.Fprintf(w, `<!doctype html><html><head><title>Umami page</title>
<script defer src="/umami.js" data-website-id="%s" data-host-url="http://%s"></script></head>
<body><h1>U</h1></body></html>`, umamiSite, collector)
		default:
			http.NotFound(w, r)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }() // returns once closed at cleanup.
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Logf("closing the test sites: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestPlausibleAndUmamiTrackers runs the trackers sites already have,
// unmodified and pointed at the collector, through the built services
// into ClickHouse: @plausible-analytics/tracker and Umami's tracker script
// in headless Chromium, @umami/node from Node. Every event they send is
// stored once and enriched as a native one; the events the client's
// privacy rules exclude (a path, Do Not Track) are not stored.
func TestPlausibleAndUmamiTrackers(t *testing.T) {
	compatTrackers(t)
	clients := fmt.Sprintf(`clients:
  - id: plaus
    domains: [plausible.example]
    respect_dnt: true
    exclude:
      paths: [/admin/*]
    api_key_hashes: [%q]
  - id: umami
    domains: [umami.example]
    umami_website_ids: [%s]
    respect_dnt: true
`, registry.HashAPIKey(compatKeys), umamiSite)
	s, conn := newStackWith(t, clients)
	collector := s.ports["collector"]
	port := compatSites(t, collector)
	plausiblePage := "http://plausible.example:" + port
	umamiPage := "http://umami.example:" + port

	// Plausible: the page view on init, a custom event with props and
	// revenue, a page view of the SPA's next route (with an engagement
	// event for the route before, which Alumini does not keep), then a page
	// the client excludes.
	ctx := compatBrowser(t, false)
	if err := chromedp.Do(ctx, chromedp.Navigate(plausiblePage+"/"), plausibleReady); err != nil {
		t.Fatalf("opening the Plausible page: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](
		`sendEvent('Signup', {props: {plan: 'pro'}, revenue: {amount: '9.50', currency: 'EUR'}})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("sending Plausible's custom event: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`history.pushState({}, '', '/pricing?utm_source=newsletter')`)); err != nil {
		t.Fatal(err)
	}
	if status["status"] != float64(202) {
		t.Errorf("Plausible's callback saw %v; want status 202", status)
	}
	eventually.True(t, 20*time.Second, "the Plausible page's three events", func() bool {
		return s.metric("collector", "alumini_collector_events_accepted_total") >= 3
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(plausiblePage+"/admin/settings"), plausibleReady); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "the excluded page view", func() bool {
		return s.metric("collector", `alumini_collector_events_dropped_total{reason="excluded_path"}`) >= 1
	})

	// Umami's script: its page view once the page loaded, a custom event,
	// a page view of the next route.
	ctx = compatBrowser(t, false)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(umamiPage+"/docs?utm_campaign=launch"),
		umamiReady,
		chromedp.Evaluate[chromedp.Void](`umami.track('Signup', {plan: 'pro', seats: 3})`, chromedp.EvalAwaitPromise),
		chromedp.Evaluate[chromedp.Void](`history.pushState({}, '', '/docs/install')`),
	); err != nil {
		t.Fatalf("driving the Umami page: %v", err)
	}
	eventually.True(t, 20*time.Second, "the Umami page's three events", func() bool {
		return s.metric("collector", "alumini_collector_events_accepted_total") >= 6
	})

	// @umami/node: a page view and a custom event from a server. Node
	// loads the package's CommonJS build, whose default export is not
	// ESM's default: the class it exports makes the same client.
	node := exec.Command("node", "--input-type=module", "-e", fmt.Sprintf(`
import { Umami } from '@umami/node';
const umami = new Umami();
umami.init({ websiteId: %q, hostUrl: 'http://%s' });
for (const send of [
  () => umami.track({ url: '/from-node', hostname: 'umami.example', title: 'From Node', referrer: 'https://news.example/' }),
  () => umami.track('Nightly job', { job: 'export' }),
]) {
  const r = await send();
  if (r.status !== 200) throw new Error('status ' + r.status + ': ' + await r.text());
}`, umamiSite, collector))
	node.Dir = compatDir
	if out, err := node.CombinedOutput(); err != nil {
		t.Fatalf("@umami/node: %v\n%s", err, out)
	}

	// Both sites again from a browser with Do Not Track on: both clients
	// respect it, so nothing of it is stored.
	ctx = compatBrowser(t, true)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(plausiblePage+"/"),
		plausibleReady,
		chromedp.Evaluate[chromedp.Void](`sendEvent('Signup', {props: {plan: 'dnt'}})`, chromedp.EvalAwaitPromise),
		chromedp.Navigate(umamiPage+"/"),
		umamiReady,
		chromedp.Evaluate[chromedp.Void](`umami.track('Signup', {plan: 'dnt'})`, chromedp.EvalAwaitPromise),
	); err != nil {
		t.Fatalf("driving the pages with Do Not Track: %v", err)
	}
	eventually.True(t, 20*time.Second, "the Do Not Track events to be dropped", func() bool {
		return s.metric("collector", `alumini_collector_events_dropped_total{reason="dnt"}`) >= 4
	})

	const want = 8
	rows := waitForRows(t, conn, want)
	if n := s.metric("collector", "alumini_collector_events_accepted_total"); n != want {
		t.Errorf("the collector accepted %v events; want %d", n, want)
	}
	var total, distinct uint64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(event_id) FROM events").Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != want || distinct != want {
		t.Errorf("events holds %d rows of %d events; want %d, each once", total, distinct, want)
	}

	type row struct{ typ, name, path string }
	got := map[string]map[row]map[string]any{}
	for client, rs := range rows {
		got[client] = map[row]map[string]any{}
		for _, r := range rs {
			got[client][row{fmt.Sprint(r["type"]), r["name"].(string), r["path"].(string)}] = r
		}
	}
	for _, tc := range []struct {
		client string
		row    row
		check  map[string]any
	}{
		{"plaus", row{"pageview", "", "/"}, map[string]any{"hostname": "plausible.example", "browser": "Chromium", "os": "Linux", "device_type": "desktop", "is_bot": uint8(0)}},
		{"plaus", row{"custom", "Signup", "/"}, map[string]any{"browser": "Chromium", "prop_keys": []string{"plan", "revenue_amount", "revenue_currency"}, "prop_values": []string{"pro", "9.50", "EUR"}}},
		{"plaus", row{"pageview", "", "/pricing"}, map[string]any{"utm_source": "newsletter", "device_type": "desktop"}},
		{"umami", row{"pageview", "", "/docs"}, map[string]any{"hostname": "umami.example", "utm_campaign": "launch", "browser": "Chromium", "is_bot": uint8(0), "title": "Umami page"}},
		{"umami", row{"custom", "Signup", "/docs"}, map[string]any{"prop_keys": []string{"plan", "seats"}, "prop_values": []string{"pro", "3"}, "language": "en-US"}},
		{"umami", row{"pageview", "", "/docs/install"}, map[string]any{"referrer": "https://umami.example/docs?utm_campaign=launch", "referrer_medium": "internal"}},
		{"umami", row{"pageview", "", "/from-node"}, map[string]any{"title": "From Node", "referrer_source": "news.example"}},
		{"umami", row{"custom", "Nightly job", "/"}, map[string]any{"prop_keys": []string{"job"}, "prop_values": []string{"export"}}},
	} {
		r := got[tc.client][tc.row]
		if r == nil {
			t.Errorf("%s: no stored %+v; stored %v", tc.client, tc.row, keys(got[tc.client]))
			continue
		}
		if tc.client == "umami" && tc.row.name != "Nightly job" && tc.row.path != "/from-node" && r["screen_width"] == uint16(0) {
			t.Errorf("umami %+v: no screen size; want the script's", tc.row)
		}
		if r["visitor_id"] == uint64(0) || r["session_id"] == uint64(0) {
			t.Errorf("%s %+v: visitor %v, session %v; want both made by the enricher", tc.client, tc.row, r["visitor_id"], r["session_id"])
		}
		for col, want := range tc.check {
			if fmt.Sprint(r[col]) != fmt.Sprint(want) {
				t.Errorf("%s %+v: %s = %v; want %v", tc.client, tc.row, col, r[col], want)
			}
		}
	}
	// Plausible's numbers through the reporter as through ClickHouse: the
	// custom event and two page views of one visitor.
	s.waitForCounts(compatKeys, 2, 1, 3, 15*time.Second)
	// And through Plausible's Stats API, the site named by its domain.
	req, err := http.NewRequest(http.MethodPost, "http://"+s.ports["reporter"]+"/api/v2/query", strings.NewReader(
		`{"site_id": "plausible.example", "metrics": ["visitors", "pageviews", "events"], "date_range": "7d", "dimensions": ["event:name"]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+compatKeys)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Results []struct {
			Metrics    []int    `json:"metrics"`
			Dimensions []string `json:"dimensions"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/query = %d, %v", resp.StatusCode, err)
	}
	if len(answer.Results) != 1 || answer.Results[0].Dimensions[0] != "Signup" || fmt.Sprint(answer.Results[0].Metrics) != "[1 0 1]" {
		t.Errorf("Stats API v2 by event name = %+v; want Signup with 1 visitor, 0 page views, 1 event", answer.Results)
	}
}

// The pages are ready once their tracker is.
var (
	plausibleReady = chromedp.Poll[chromedp.Void](`typeof window.sendEvent === 'function'`)
	umamiReady     = chromedp.Poll[chromedp.Void](`typeof window.umami === 'object'`)
)

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
