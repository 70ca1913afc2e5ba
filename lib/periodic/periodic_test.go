package periodic

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunCallsUntilCancelled(t *testing.T) {
	// In a bubble the ticker runs on the fake clock, which moves only when
	// every goroutine is blocked: the checks below see all the calls Run
	// makes, with no real waiting.
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int32
		done := make(chan struct{})
		go func() {
			Run(ctx, time.Millisecond, func() {
				if calls.Add(1) == 3 {
					cancel()
				}
			})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
		if n := calls.Load(); n < 3 {
			t.Errorf("f ran %d times before the cancel; want 3", n)
		}
		n := calls.Load()
		// Not synchronisation: twenty intervals of the fake clock, in which
		// a ticker Run left running would call f again.
		time.Sleep(20 * time.Millisecond)
		if calls.Load() != n {
			t.Error("f ran after Run returned")
		}
	})
}
