package traffic

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestOfferSendsEachRequestOnceWithItsDueTime(t *testing.T) {
	start := time.Now()
	const n, interval = 200, 100 * time.Microsecond
	var mu sync.Mutex
	seen := map[int]int{}
	Offer(context.Background(), start, interval, n, 8, func(i int, due time.Time) {
		if want := start.Add(time.Duration(i) * interval); !due.Equal(want) {
			t.Errorf("request %d due at %v; want %v", i, due.Sub(start), want.Sub(start))
		}
		mu.Lock()
		seen[i]++
		mu.Unlock()
	})
	if len(seen) != n {
		t.Fatalf("%d requests sent; want %d", len(seen), n)
	}
	for i, c := range seen {
		if c != 1 {
			t.Errorf("request %d sent %d times; want once", i, c)
		}
	}
}

func TestOfferStopsHandingOutWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	sent := 0
	// One request a second: after the first, cancelling must end Offer
	// long before the other 99 are due.
	Offer(ctx, time.Now(), time.Second, 100, 1, func(int, time.Time) {
		mu.Lock()
		sent++
		mu.Unlock()
		cancel()
	})
	if sent != 1 {
		t.Errorf("%d requests sent after the context ended at the first; want 1", sent)
	}
}
