package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// customEvents adds three visitors of shop with sign-ups and carts to the
// fixture (which has visitor 1's signup, plan=pro):
//
//	visitor 4, 2026-03-06: "/", "/pricing", signup (plan=free), Add to cart (color=red)
//	visitor 5, 2026-03-07: "/", Add to cart (blue), Add to cart (red)
//	visitor 6, 2026-03-08: "/pricing", signup (plan=pro)
//
// so that signup has 3 visitors of 5 (60 %), Add to cart 2 visitors and 3
// events, and the funnel /, /pricing, signup counts 4, 2, 2.
func customEvents() []*aluminiv1.Event {
	n := 0
	ev := func(visitor uint64, ts, path, name string, props map[string]string) *aluminiv1.Event {
		n++
		e := &aluminiv1.Event{ClientId: "shop", EventId: "ce" + strconv.Itoa(n), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
			TimestampMs: at(ts), ReceivedAtMs: at(ts), VisitorId: visitor, SessionId: visitor * 10, Path: path,
			Url: "https://shop.example" + path, Hostname: "shop.example", Browser: "Firefox", Country: "DE",
			DeviceType: aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP}
		if name != "" {
			e.Type, e.Name, e.Properties = aluminiv1.EventType_EVENT_TYPE_CUSTOM, name, props
		}
		return e
	}
	return []*aluminiv1.Event{
		ev(4, "2026-03-06T10:00:00Z", "/", "", nil),
		ev(4, "2026-03-06T10:01:00Z", "/pricing", "", nil),
		ev(4, "2026-03-06T10:02:00Z", "/pricing", "signup", map[string]string{"plan": "free"}),
		ev(4, "2026-03-06T10:03:00Z", "/pricing", "Add to cart", map[string]string{"color": "red"}),
		ev(5, "2026-03-07T12:00:00Z", "/", "", nil),
		ev(5, "2026-03-07T12:05:00Z", "/", "Add to cart", map[string]string{"color": "blue"}),
		ev(5, "2026-03-07T12:06:00Z", "/", "Add to cart", map[string]string{"color": "red"}),
		ev(6, "2026-03-08T09:00:00Z", "/pricing", "", nil),
		ev(6, "2026-03-08T09:10:00Z", "/pricing", "signup", map[string]string{"plan": "pro"}),
	}
}

// TestDashboardCustomEventsInChromium clicks through the custom-events
// panel, a goal, a property breakdown and a funnel in headless Chromium
// and checks every number on screen against the API's answer for the same
// question. Screenshots go to $ALUMINI_ARTIFACTS_DIR (default: the system
// temp directory) as reporter-dashboard-events*.jpg.
func TestDashboardCustomEventsInChromium(t *testing.T) {
	e := newEnv(t)
	insert(t, e.conn, customEvents())
	ctx := dashboardBrowser(t, e)
	const rangeQ = "from=2026-03-01&to=2026-03-31&tz=UTC"
	apiGet := func(path string, q url.Values, into any) {
		t.Helper()
		status, _, body := request{target: path + "?" + rangeQ + "&" + q.Encode(), auth: "Bearer " + shopKey}.do(t, e.h)
		if status != 200 {
			t.Fatalf("GET %s?%s = %d %s", path, q.Encode(), status, body)
		}
		if err := json.Unmarshal([]byte(body), into); err != nil {
			t.Fatal(err)
		}
	}
	// row is a breakdown row or an aggregate's results.
	type row struct {
		Value            string
		Visitors, Events float64
		Conversions      float64
		ConversionRate   float64 `json:"conversion_rate"`
	}
	// breakdown is the API's breakdown as the panels show it: value,
	// visitors, events.
	breakdown := func(q url.Values) [][]string {
		t.Helper()
		var rows struct{ Results struct{ Rows []row } }
		apiGet(BreakdownPath, q, &rows)
		var out [][]string
		for _, r := range rows.Results.Rows {
			out = append(out, []string{r.Value, jsonNumber(r.Visitors), jsonNumber(r.Events)})
		}
		return out
	}
	table := func(sel string) [][]string {
		t.Helper()
		cells, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](fmt.Sprintf(
			`[...document.querySelectorAll(%q)].map(tr => [...tr.cells].map(c => c.textContent.trim()))`, sel+" tbody tr")))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return cells
	}
	// act runs the steps and waits until the page has drawn again and
	// shows no error.
	act := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		before, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.loaded || ""`))
		if err == nil {
			err = chromedp.Do(ctx, steps...)
		}
		if err == nil {
			_, err = chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(document.body.dataset.loaded || "") !== %q || document.getElementById("error").textContent !== ""`, before),
				chromedp.WithPollingTimeout(20*time.Second)))
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error"))); msg != "" {
			t.Fatalf("%s: the dashboard shows an error: %s", what, msg)
		}
	}
	act("logging in",
		chromedp.WaitVisible(chromedp.ID("apikey")),
		chromedp.SendKeys(chromedp.ID("apikey"), shopKey),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
	)

	// Custom events: each name with its visitors and events, as the
	// event_name breakdown answers.
	want := breakdown(url.Values{"dimension": {"event_name"}, "limit": {"10"}})
	if got := table("#top-events"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("custom events panel = %v; want %v (from the API)", got, want)
	}
	if fmt.Sprint(want) != "[[signup 3 3] [Add to cart 2 3]]" {
		t.Errorf("the API's custom events = %v; want signup 3 visitors 3 events, Add to cart 2 and 3 (the fixture)", want)
	}

	// Goals: conversions and conversion rate of each event, as
	// aggregate?goal= answers.
	want = nil
	for _, g := range []string{"signup", "Add to cart"} {
		var agg struct{ Results row }
		apiGet(AggregatePath, url.Values{"goal": {g}}, &agg)
		want = append(want, []string{g, jsonNumber(agg.Results.Conversions), jsonNumber(agg.Results.ConversionRate) + "%"})
	}
	if got := table("#goals"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("goals panel = %v; want %v (from the API)", got, want)
	}
	if fmt.Sprint(want) != "[[signup 3 60%] [Add to cart 2 40%]]" {
		t.Errorf("the API's goals = %v; want signup 3 of 5 visitors (60%%), Add to cart 2 (40%%)", want)
	}

	// The funnel the API computes, drawn as bars.
	steps := []string{"page:/", "page:/pricing", "event:signup"}
	act("drawing a funnel",
		chromedp.SendKeys(chromedp.ID("funnel-steps"), strings.Join(steps, ", ")),
		chromedp.Click(chromedp.CSS(`#funnel-form button[type=submit]`)),
	)
	var funnel struct {
		Results struct {
			Steps []struct {
				Visitors       float64
				ConversionRate float64 `json:"conversion_rate"`
			}
		}
	}
	apiGet(FunnelPath, url.Values{"step": steps, "window": {"24h"}}, &funnel)
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll("#funnel li")].map(li => [li.dataset.visitors, li.dataset.rate, li.querySelector(".bar").style.width])`))
	if err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, st := range funnel.Results.Steps {
		want = append(want, []string{jsonNumber(st.Visitors), jsonNumber(st.ConversionRate), jsonNumber(st.ConversionRate) + "%"})
	}
	if fmt.Sprint(drawn) != fmt.Sprint(want) {
		t.Errorf("funnel drawn as (visitors, rate, bar width) %v; want %v (from the API)", drawn, want)
	}
	if fmt.Sprint(want) != "[[4 100 100%] [2 50 50%] [2 50 50%]]" {
		t.Errorf("the API's funnel = %v; want 4, 2, 2 visitors (the fixture)", want)
	}
	screenshot(t, ctx, "reporter-dashboard-events.jpg")

	// Clicking a goal filters the report to the visitors' events of it.
	act("clicking the goal Add to cart", chromedp.Click(chromedp.CSS(`#goals tbody tr:nth-child(2) button`)))
	var agg struct{ Results row }
	apiGet(AggregatePath, url.Values{"filter": {"event_name:is:Add to cart"}}, &agg)
	if got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("visitors"))); got != jsonNumber(agg.Results.Visitors) || got != "2" {
		t.Errorf("visitors after clicking the goal Add to cart = %q; want %s (the API), 2 (the fixture)", got, jsonNumber(agg.Results.Visitors))
	}
	if got := table("#top-events"); fmt.Sprint(got) != "[[Add to cart 2 3]]" {
		t.Errorf("custom events filtered to Add to cart = %v", got)
	}
	// Remove the filter, then pick signup in the events panel and break it
	// down by its property plan.
	act("removing the filter", chromedp.Click(chromedp.CSS(`#filters button`)))
	act("clicking the event signup", chromedp.Click(chromedp.CSS(`#top-events tbody tr:nth-child(1) button`)))
	act("breaking signup down by plan",
		chromedp.SendKeys(chromedp.ID("prop-key"), "plan"),
		chromedp.Click(chromedp.CSS(`#prop-form button[type=submit]`)),
	)
	want = breakdown(url.Values{"dimension": {"prop:plan"}, "filter": {"event_name:is:signup"}, "limit": {"10"}})
	if got := table("#prop-breakdown"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("signup by plan = %v; want %v (from the API)", got, want)
	}
	if fmt.Sprint(want) != "[[pro 2 2] [free 1 1]]" {
		t.Errorf("the API's signup by plan = %v; want pro 2, free 1 (the fixture)", want)
	}
	if got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("chosen-event"))); got != "signup" {
		t.Errorf("properties panel names %q; want signup", got)
	}
	// The funnel keeps counting every visitor: an event filter would leave
	// its page steps empty.
	drawn, err = chromedp.Run(ctx, chromedp.Evaluate[[][]string](`[...document.querySelectorAll("#funnel li")].map(li => [li.dataset.visitors])`))
	if err != nil || fmt.Sprint(drawn) != "[[4] [2] [2]]" {
		t.Errorf("funnel under the signup filter = %v, %v; want 4, 2, 2 visitors as without it", drawn, err)
	}
	screenshot(t, ctx, "reporter-dashboard-events-property.jpg")
}

// screenshot saves the page to $ALUMINI_ARTIFACTS_DIR (default: the
// system temp directory).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("ALUMINI_ARTIFACTS_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatalf("saving the screenshot: %v", err)
	}
	t.Logf("dashboard screenshot: %s", path)
}
