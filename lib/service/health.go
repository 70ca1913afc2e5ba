package service

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// checkTimeout bounds one readiness probe of one dependency, so a hung
// dependency makes /readyz answer 503 instead of hanging the prober.
const checkTimeout = 2 * time.Second

// Health answers liveness and readiness. A service is ready once it marked
// itself started, while every readiness check passes and it is not draining.
type Health struct {
	started  atomic.Bool
	draining atomic.Bool
	mu       sync.Mutex
	checks   map[string]func(context.Context) error
}

// NewHealth returns a Health that is not ready until Started is called.
func NewHealth() *Health {
	return &Health{checks: make(map[string]func(context.Context) error)}
}

// AddCheck registers a dependency check run on every readiness probe.
func (h *Health) AddCheck(name string, check func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = check
}

// Started marks startup complete (topics created, migrations applied, ...).
func (h *Health) Started() { h.started.Store(true) }

// SetDraining makes readiness fail for the rest of the process's life.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Draining reports whether shutdown has begun.
func (h *Health) Draining() bool { return h.draining.Load() }

// Ready runs the checks and returns the failures by name; empty means ready.
func (h *Health) Ready(ctx context.Context) map[string]string {
	failures := make(map[string]string)
	if h.draining.Load() {
		failures["shutdown"] = "draining"
	}
	if !h.started.Load() {
		failures["startup"] = "not started yet"
	}
	h.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(h.checks))
	for name, c := range h.checks {
		checks[name] = c
	}
	h.mu.Unlock()

	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			if err := check(cctx); err != nil {
				mu.Lock()
				failures[name] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failures
}

// ServeLive answers 200 while the process runs.
func (h *Health) ServeLive(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n")) // the prober hung up; nothing to tell it.
}

// ServeReady answers 200 when ready and 503 with the failing checks as JSON.
func (h *Health) ServeReady(w http.ResponseWriter, r *http.Request) {
	status, body := h.ReadyResponse(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the prober hung up; nothing to tell it.
}

// ReadyResponse is the status and JSON body of a readiness probe, for
// servers that are not net/http (the collector's fasthttp intake).
func (h *Health) ReadyResponse(ctx context.Context) (int, []byte) {
	failures := h.Ready(ctx)
	type response struct {
		Ready    bool              `json:"ready"`
		Failures map[string]string `json:"failures,omitempty"`
		Checks   []string          `json:"checks"`
	}
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	h.mu.Unlock()
	sort.Strings(names)
	body, _ := json.Marshal(response{Ready: len(failures) == 0, Failures: failures, Checks: names}) // a struct of strings always marshals.
	if len(failures) > 0 {
		return http.StatusServiceUnavailable, body
	}
	return http.StatusOK, body
}
