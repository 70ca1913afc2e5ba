package service

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func readyz(t *testing.T, h *Health) (int, map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct {
		Ready    bool              `json:"ready"`
		Failures map[string]string `json:"failures"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("/readyz body %q: %v", rec.Body, err)
	}
	if body.Ready != (rec.Code == http.StatusOK) {
		t.Errorf("/readyz says ready=%v with status %d", body.Ready, rec.Code)
	}
	return rec.Code, body.Failures
}

func TestReadinessFollowsStartupChecksAndDraining(t *testing.T) {
	h := NewHealth()
	if code, f := readyz(t, h); code != 503 || f["startup"] == "" {
		t.Errorf("before Started: %d %v; want 503 naming startup", code, f)
	}
	h.Started()
	if code, f := readyz(t, h); code != 200 {
		t.Errorf("started, no checks: %d %v; want 200", code, f)
	}
	var kafkaDown error
	h.AddCheck("kafka", func(context.Context) error { return kafkaDown })
	kafkaDown = errors.New("no broker answers")
	if code, f := readyz(t, h); code != 503 || f["kafka"] != "no broker answers" {
		t.Errorf("kafka down: %d %v; want 503 with the kafka failure", code, f)
	}
	kafkaDown = nil
	if code, _ := readyz(t, h); code != 200 {
		t.Errorf("kafka back: %d; want 200", code)
	}
	h.SetDraining()
	if code, f := readyz(t, h); code != 503 || f["shutdown"] != "draining" {
		t.Errorf("draining: %d %v; want 503 naming shutdown", code, f)
	}
}

func TestHungCheckTimesOut(t *testing.T) {
	h := NewHealth()
	h.Started()
	h.AddCheck("stuck", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	start := time.Now()
	code, f := readyz(t, h)
	if code != 503 || f["stuck"] == "" {
		t.Errorf("hung check: %d %v; want 503 naming it", code, f)
	}
	if d := time.Since(start); d > checkTimeout+time.Second {
		t.Errorf("/readyz took %v with a hung check; want about %v", d, checkTimeout)
	}
}
