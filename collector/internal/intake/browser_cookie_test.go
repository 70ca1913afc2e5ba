package intake

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aluminiapp/pipeline/lib/chromiumtest"
)

// TestTrackerWithLargeCookiesInHeadlessChromium: a site served first-party
// puts its own cookies on every hit. With 8 KiB of them (three cookies,
// each under Chrome's 4 KiB limit per cookie) Chrome's head is over 8 KiB;
// fasthttp's default read buffer (4 KiB) refused it with 400 and t.js does
// not retry a 400, so the page view was lost.
func TestTrackerWithLargeCookiesInHeadlessChromium(t *testing.T) {
	f := start(t)
	site := sitePage(t, f.url)
	ctx := chromiumtest.Start(t)
	// The page (127.0.0.1) and the collector (127.0.0.1, another port)
	// share cookies: ports do not separate them.
	setCookies := `for (let i = 0; i < 3; i++) document.cookie = 'big' + i + '=' + 'v'.repeat(2800) + '; path=/';
		document.cookie.length`
	if err := chromedp.Do(ctx, chromedp.Navigate(site+"/")); err != nil {
		t.Fatalf("driving chromium: %v", err)
	}
	cookieLen, err := chromedp.Run(ctx, chromedp.Evaluate[int](setCookies))
	if err != nil {
		t.Fatalf("setting cookies: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`history.pushState({}, '', '/with-cookies')`)); err != nil {
		t.Fatalf("driving chromium: %v", err)
	}
	if cookieLen < 8<<10 {
		t.Fatalf("the page holds %d bytes of cookies; want at least 8 KiB", cookieLen)
	}
	// The page view on load, the early queued event, and the one sent with
	// the cookies.
	var stored bool
	for _, h := range readHits(t, f, 3) {
		if strings.HasSuffix(h.Url, "/with-cookies") {
			stored = true
		}
	}
	if !stored {
		t.Error("the page view sent with 8 KiB of cookies was not stored")
	}
	if n := testutil.ToFloat64(f.handler.requests.WithLabelValues("unreadable", "431")) + testutil.ToFloat64(f.handler.requests.WithLabelValues("unreadable", "400")); n != 0 {
		t.Errorf("%v requests were unreadable; want none", n)
	}
}
