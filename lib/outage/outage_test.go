package outage

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestRetryLogsOncePerStateChangeAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.InfoLevel)
		reg := prometheus.NewRegistry()
		d := NewMonitor(zap.New(core), reg).Dependency("kafka")
		if got := testutil.ToFloat64(d.up); got != 1 {
			t.Fatalf("alumini_dependency_up before any call = %v, want 1", got)
		}
		refused := errors.New("connection refused")
		tries := 0
		var duringOutage error
		start := time.Now()
		err := d.Retry(context.Background(), "creating topics", func(context.Context) error {
			tries++
			if tries == 3 {
				duringOutage = d.Check(context.Background())
			}
			if tries < 10 {
				return refused
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Retry: %v", err)
		}
		if duringOutage == nil || !errors.Is(duringOutage, refused) {
			t.Errorf("Check during the outage = %v, want an error wrapping the last failure", duringOutage)
		}
		if err := d.Check(context.Background()); err != nil {
			t.Errorf("Check after recovery = %v", err)
		}
		if n := logs.Len(); n != 2 {
			t.Errorf("%d log lines for 9 failures and a recovery, want 2 (down, back): %v", n, logs.All())
		}
		if got := testutil.ToFloat64(d.failures); got != 9 {
			t.Errorf("failures = %v, want 9", got)
		}
		if got := testutil.ToFloat64(d.outages); got != 1 {
			t.Errorf("outages = %v, want 1", got)
		}
		// Nine waits, each at least half its bound: 50+100+200+400+800+1600+2500*3 ms.
		if waited := time.Since(start); waited < 10650*time.Millisecond || waited > 21300*time.Millisecond {
			t.Errorf("waited %v over nine retries, want between the jittered bounds 10.65s and 21.3s", waited)
		}
	})
}

func TestRetryStopsOnPermanentErrorsAndCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := NewMonitor(zap.NewNop(), prometheus.NewRegistry()).Dependency("clickhouse")
		bad := errors.New("partition counts differ")
		tries := 0
		err := d.Retry(context.Background(), "opening", func(context.Context) error {
			tries++
			return Permanent(bad)
		})
		if !errors.Is(err, bad) || tries != 1 {
			t.Errorf("Retry = %v after %d tries, want the permanent error after 1", err, tries)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err = d.Retry(ctx, "opening", func(context.Context) error { return errors.New("refused") })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Retry after cancellation = %v, want the context's error", err)
		}
	})
}

func TestBackoffStaysWithinBounds(t *testing.T) {
	var b Backoff
	bound := MinBackoff
	for range 20 {
		w := b.Next()
		if w < bound/2 || w > bound {
			t.Fatalf("wait %v outside [%v, %v]", w, bound/2, bound)
		}
		bound = min(2*bound, MaxBackoff)
	}
	b.Reset()
	if w := b.Next(); w > MinBackoff {
		t.Errorf("after Reset the wait is %v, want at most %v", w, MinBackoff)
	}
}
