package intake

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/aluminiapp/pipeline/lib/chromiumtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// sitePage serves a client's page that loads t.js from the collector.
func sitePage(t *testing.T, collectorURL string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Shop home</title>
<script>window.alumini = function () { (alumini.q = alumini.q || []).push(arguments); }; alumini('Early', {from: 'queue'});</script>
<script src="%s/t.js" data-key="wk_shop"></script></head><body><h1>Shop</h1></body></html>`, collectorURL)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// failingFirst serves h, but answers the first n event requests with 503,
// as a collector does while Kafka is down.
func failingFirst(t *testing.T, h *Handler, n int64) (string, *atomic.Int64) {
	t.Helper()
	var seen atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/api/event" && ctx.IsPost() && seen.Add(1) <= n {
			ctx.Response.Header.Set("Access-Control-Allow-Origin", string(ctx.Request.Header.Peek("Origin")))
			ctx.Response.Header.Set("Access-Control-Allow-Credentials", "true")
			ctx.Response.Header.Set("Retry-After", "1")
			writeError(ctx, 503, "kafka is down")
			return
		}
		h.Serve(ctx)
	}}
	go func() { _ = srv.Serve(ln) }() // returns when the listener closes at cleanup.
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Logf("shutdown: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), &seen
}

func TestTrackerInHeadlessChromium(t *testing.T) {
	f := start(t)
	// The first page view meets a 503 and must be retried with its id.
	collector, seen := failingFirst(t, f.handler, 1)
	site := sitePage(t, collector)
	ctx := chromiumtest.Start(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(site+"/"),
		chromedp.Evaluate[chromedp.Void](`history.pushState({}, '', '/pricing')`),
		chromedp.Evaluate[chromedp.Void](`location.hash = 'faq'`),
		chromedp.Evaluate[chromedp.Void](`alumini('Signup', {plan: 'pro', seats: 3})`),
	); err != nil {
		t.Fatalf("driving chromium: %v", err)
	}
	hits := readHits(t, f, 5)
	got := map[string]*aluminiv1.RawHit{}
	for _, h := range hits {
		key := h.Url
		if h.Type == aluminiv1.EventType_EVENT_TYPE_CUSTOM {
			key = h.Name
		}
		got[key] = h
		if h.ClientId != "shop" || len(h.EventId) != 32 || h.UserAgent == "" || h.ScreenWidth == 0 || h.Timezone == "" {
			t.Errorf("hit %v: want shop's, with the browser's event id, user agent, screen and time zone", h)
		}
	}
	for _, want := range []struct{ key, referrer, title string }{
		{site + "/", "", "Shop home"},
		{site + "/pricing", site + "/", "Shop home"},
		{site + "/pricing#faq", site + "/pricing", "Shop home"},
	} {
		h := got[want.key]
		if h == nil || h.Type != aluminiv1.EventType_EVENT_TYPE_PAGEVIEW || h.Referrer != want.referrer || h.Title != want.title {
			t.Errorf("page view of %s = %v; want referrer %q and title %q", want.key, h, want.referrer, want.title)
		}
	}
	if h := got["Signup"]; h == nil || h.Properties["plan"] != "pro" || h.Properties["seats"] != "3" || h.Url != site+"/pricing#faq" {
		t.Errorf("custom event = %v; want Signup with plan=pro seats=3 on /pricing#faq", h)
	}
	if h := got["Early"]; h == nil || h.Properties["from"] != "queue" {
		t.Errorf("queued custom event = %v; want Early sent once t.js loaded", h)
	}
	if n := seen.Load(); n != 6 {
		t.Errorf("the browser sent %d event requests; want 6 (5 events, one retried after a 503)", n)
	}
}

func TestTrackerHonoursOptOutAndGPCInTheBrowser(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(ctx context.Context, collector string) error
	}{
		{"opt-out cookie", func(ctx context.Context, collector string) error {
			// The collector's opt-out page sets the cookie on 127.0.0.1,
			// the page's host too (cookies ignore ports): as first-party.
			return chromedp.Do(ctx, chromedp.Navigate(collector+"/optout"))
		}},
		{"Global Privacy Control", func(ctx context.Context, _ string) error {
			return chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
					Source: `Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})`,
				})
				return err
			}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t)
			site := sitePage(t, f.url)
			ctx := chromiumtest.Start(t)
			if err := tc.setup(ctx, f.url); err != nil {
				t.Fatal(err)
			}
			if err := chromedp.Do(ctx,
				chromedp.Navigate(site+"/"),
				chromedp.Evaluate[chromedp.Void](`history.pushState({}, '', '/next'); alumini('Signup')`),
				chromedp.Sleep(time.Second),
			); err != nil {
				t.Fatal(err)
			}
			if n := testutil.ToFloat64(f.handler.requests.WithLabelValues("event", "202")) + testutil.ToFloat64(f.handler.requests.WithLabelValues("event", "204")); n != 0 {
				t.Errorf("the browser sent %v event requests; want none", n)
			}
			if n := testutil.ToFloat64(f.handler.requests.WithLabelValues("script", "200")); n != 1 {
				t.Errorf("t.js was served %v times; want 1 (the page did load it)", n)
			}
			assertEmpty(t, f)
		})
	}
}
