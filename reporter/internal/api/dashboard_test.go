package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aluminiapp/pipeline/lib/chromiumtest"
	"github.com/aluminiapp/pipeline/reporter/internal/dashboard"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// TestDashboardInChromium loads the dashboard in headless Chromium against
// the seeded fixture, logs in with shop's key, checks the headline numbers
// and top pages on screen against the API, clicks a row to filter, and
// saves a screenshot to $ALUMINI_ARTIFACTS_DIR (default: the system temp
// directory) as reporter-dashboard.jpg.
func TestDashboardInChromium(t *testing.T) {
	var store *query.Store
	e := newEnv(t, func(c *Config) { store = c.Store })
	ctx := dashboardBrowser(t, e)
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("apikey")),
		chromedp.SendKeys(chromedp.ID("apikey"), shopKey),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
	)
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.loaded !== undefined || document.getElementById("error").textContent !== ""`, chromedp.WithPollingTimeout(20*time.Second)))
	}
	if err != nil {
		t.Fatalf("driving chromium: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	if msg := text("#error"); msg != "" {
		t.Fatalf("the dashboard shows an error: %s", msg)
	}
	visitors, pageviews, bounce := text("#visitors"), text("#pageviews"), text("#bounce_rate")
	firstPage := text("#top-page tbody tr:first-child td:first-child")
	firstPageVisitors := text("#top-page tbody tr:first-child td:nth-child(2)")
	screenshot(t, ctx, "reporter-dashboard.jpg")
	// The same numbers from the API.
	_, _, body := request{target: AggregatePath + "?from=2026-03-01&to=2026-03-31&tz=UTC", auth: "Bearer " + shopKey}.do(t, e.h)
	var agg struct {
		Results struct {
			Visitors, Pageviews float64
			BounceRate          float64 `json:"bounce_rate"`
		}
	}
	if err := json.Unmarshal([]byte(body), &agg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"visitors", visitors, jsonNumber(agg.Results.Visitors)},
		{"page views", pageviews, jsonNumber(agg.Results.Pageviews)},
		{"bounce rate", bounce, jsonNumber(agg.Results.BounceRate) + "%"},
		{"top page", firstPage, "/"},
		{"top page visitors", firstPageVisitors, "2"},
	} {
		if strings.TrimSpace(c.got) != c.want {
			t.Errorf("dashboard %s = %q; want %q (from the API)", c.name, c.got, c.want)
		}
	}
	if visitors != "2" {
		t.Errorf("dashboard visitors = %q; want 2 (the fixture)", visitors)
	}
	if note := text("#sampled"); note != "" {
		t.Errorf("dashboard says %q over exact numbers; want no sampling note", note)
	}

	// Clicking a page filters the report: /pricing was seen by visitor 1.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#top-page tbody tr:nth-child(3) button`)),
		chromedp.WaitVisible(chromedp.CSS(`#filters button`)),
	)
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("visitors").textContent === "1"`, chromedp.WithPollingTimeout(10*time.Second)))
	}
	if err != nil {
		t.Errorf("filtering by a clicked page: %v", err)
	}

	// Reports that read a sample say so: over 2 events, shop's March reads
	// one in 5 visitors.
	store.SampleAbove(2)
	err = chromedp.Do(ctx, chromedp.Reload())
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("sampled").textContent === "Estimated from a sample of 1 in 5 visitors."`, chromedp.WithPollingTimeout(20*time.Second)))
	}
	if err != nil {
		t.Errorf("waiting for the sampling note: %v (it says %q)", err, text("#sampled"))
	}
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// dashboardBrowser serves the dashboard and e's API on one origin, opens it
// in headless Chromium on shop's March 2026 in UTC and returns the tab.
func dashboardBrowser(t *testing.T, e *env) context.Context {
	t.Helper()
	dash := dashboard.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			e.h.ServeHTTP(w, r)
			return
		}
		dash.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	ctx := chromiumtest.Start(t, chromedp.WindowSize(1280, 1400))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?from=2026-03-01&to=2026-03-31&tz=UTC")); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	return ctx
}
