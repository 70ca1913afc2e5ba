// Package eventually waits in tests for a condition to hold, polling it,
// instead of sleeping for a guessed time.
package eventually

import (
	"testing"
	"time"
)

// Polls start this often and slow down to maxInterval, so that a fast
// condition is seen at once and a slow one (a ClickHouse query, a scrape)
// is not asked hundreds of times a second.
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 200 * time.Millisecond
)

// Within polls cond until it returns true, and reports whether it did
// before within passed. cond is always asked at least once, and once more
// at the deadline.
func Within(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	wait := firstInterval
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(wait, left))
		wait = min(wait*2, maxInterval)
	}
}

// True fails the test at once when cond has not held within, naming what
// was waited for.
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("waited %v for %s", within, what)
	}
}
