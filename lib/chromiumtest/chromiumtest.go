// Package chromiumtest starts headless Chromium for the browser tests (the
// tracker, the Segment browser SDK, the dashboard).
package chromiumtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is where deploy/deps.sh installs Chromium (Debian's chromium).
const Path = "/usr/bin/chromium"

// Start starts headless Chromium with a profile of its own for one test and
// returns the context of its first tab, which every tab opened from it
// shares a cookie jar with. Actions on it time out after a minute; the
// browser stops when the test ends. A missing Chromium fails the test:
// deploy/deps.sh installs it.
func Start(t testing.TB, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Fatalf("%s is missing (deploy/deps.sh installs it: apt-get install chromium): %v", Path, err)
	}
	all := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	}, opts...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), all...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return ctx
}
