package traffic

import (
	"context"
	"sync"
	"time"
)

// Offer calls send for requests 0 to n-1, request i due at start +
// i*interval, from conns goroutines: an open loop, as wrk2 offers load. A
// request whose senders are all busy waits, and send is told when it was
// due, so its latency counts the wait (no coordinated omission). Offer
// returns when every send returned, or stops handing out requests when ctx
// ends.
func Offer(ctx context.Context, start time.Time, interval time.Duration, n, conns int, send func(i int, due time.Time)) {
	queue := make(chan int, min(n, 1<<16))
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for i := range queue {
				send(i, start.Add(time.Duration(i)*interval))
			}
		})
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range n {
		// Sleep only when the next request is well ahead: timers are
		// coarse, and a late request is still sent at once.
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > time.Millisecond {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		queue <- i
	}
	close(queue)
	wg.Wait()
}
