// Package periodic runs background chores (reloading the client registry,
// rotating salts, refreshing caches) on a fixed interval.
package periodic

import (
	"context"
	"time"
)

// Run calls f every interval until ctx ends, the first time one interval
// after the call: callers do the first run themselves, at start, where a
// failure can still stop the service. A slow f delays the next call rather
// than overlapping it.
func Run(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
