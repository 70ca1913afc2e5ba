package erased_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/sinker/internal/erased"
	"github.com/aluminiapp/pipeline/sinker/internal/erased/erasedtest"
)

func TestLoad(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s := erased.New(conn, zaptest.NewLogger(t), reg)

	// No table: a database not migrated yet. Not an error to stop for.
	if err := s.Load(ctx); !errors.Is(err, erased.ErrNoTable) {
		t.Fatalf("Load() without the table = %v; want ErrNoTable", err)
	}
	s.Refresh(ctx) // logs nothing above debug, counts no failure
	if got := value(t, reg, "alumini_sinker_erased_refresh_failures_total"); got != 0 {
		t.Errorf("refresh failures = %v; want 0 for a missing table", got)
	}
	if s.Contains("shop", 7) || s.Len() != 0 {
		t.Errorf("Contains(shop, 7), Len() = %v, %d; want false, 0", s.Contains("shop", 7), s.Len())
	}

	if err := chschema.Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	erasedtest.Record(t, conn, "shop", 7)
	erasedtest.Record(t, conn, "news", 8)
	if err := s.Load(ctx); err != nil {
		t.Fatalf("Load() = %v", err)
	}
	for _, c := range []struct {
		client  string
		visitor uint64
		want    bool
	}{
		{"shop", 7, true}, {"news", 8, true}, {"shop", 8, false}, {"news", 7, false}, {"other", 7, false},
	} {
		if got := s.Contains(c.client, c.visitor); got != c.want {
			t.Errorf("Contains(%q, %d) = %v; want %v", c.client, c.visitor, got, c.want)
		}
	}
	if s.Len() != 2 {
		t.Errorf("Len() = %d; want 2 (repeated records count once)", s.Len())
	}
	if got := value(t, reg, "alumini_sinker_erased_visitors"); got != 2 {
		t.Errorf("alumini_sinker_erased_visitors = %v; want 2", got)
	}

	// A failed load keeps what was known: an erasure is never forgotten.
	if err := conn.Exec(ctx, "DROP TABLE erased_visitors"); err != nil {
		t.Fatal(err)
	}
	if err := s.Load(ctx); !errors.Is(err, erased.ErrNoTable) {
		t.Fatalf("Load() after DROP = %v; want ErrNoTable", err)
	}
	if !s.Contains("shop", 7) {
		t.Error("Contains(shop, 7) after a failed load = false; want true")
	}
}

// value is the value of the unlabelled gauge or counter name in reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
