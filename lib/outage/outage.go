// Package outage keeps a service running while a dependency (Kafka,
// ClickHouse) is down: it retries with capped, jittered backoff, logs once
// when the dependency goes down and once when it comes back (not on every
// try), counts outages and failed tries in metrics, and answers a
// readiness check that fails while the dependency is down.
//
// Only configuration errors should stop a service at start; everything
// else a dependency can answer (refused connections, a broker not
// available, a coordinator moving, a topic being created) passes with
// time. Callers mark the errors that cannot pass with Permanent.
package outage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Backoff bounds: the first retry waits up to MinBackoff, each next one up
// to twice as long, never more than MaxBackoff. Full jitter (a random wait
// between half and all of the bound) keeps many instances that lost the
// same broker from retrying in step.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 5 * time.Second
)

// Monitor holds the metrics of every dependency of one service.
type Monitor struct {
	log      *zap.Logger
	up       *prometheus.GaugeVec
	outages  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// NewMonitor registers the dependency metrics on reg.
func NewMonitor(log *zap.Logger, reg prometheus.Registerer) *Monitor {
	m := &Monitor{
		log: log,
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "alumini_dependency_up",
			Help: "1 while the dependency answers, 0 while it is down (the service retries and /readyz is 503).",
		}, []string{"dependency"}),
		outages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_dependency_outages_total",
			Help: "Times the dependency went from up to down.",
		}, []string{"dependency"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_dependency_failures_total",
			Help: "Calls to the dependency that failed and were retried.",
		}, []string{"dependency"}),
	}
	reg.MustRegister(m.up, m.outages, m.failures)
	return m
}

// Dependency is the state of one dependency, as seen by one service.
type Dependency struct {
	name     string
	log      *zap.Logger
	up       prometheus.Gauge
	outages  prometheus.Counter
	failures prometheus.Counter

	mu      sync.Mutex
	down    bool
	since   time.Time
	lastErr error
}

// Dependency returns the tracker of the named dependency, up until a
// call fails. The metrics of each name are initialised at once, so that
// dashboards and alerts see them before the first outage.
func (m *Monitor) Dependency(name string) *Dependency {
	d := &Dependency{
		name:     name,
		log:      m.log.With(zap.String("dependency", name)),
		up:       m.up.WithLabelValues(name),
		outages:  m.outages.WithLabelValues(name),
		failures: m.failures.WithLabelValues(name),
	}
	d.up.Set(1)
	return d
}

// Failed records a failed call: the first failure after success logs a
// warning and counts an outage; later ones are only counted.
func (d *Dependency) Failed(what string, err error) {
	d.failures.Inc()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = err
	if d.down {
		return
	}
	d.down, d.since = true, time.Now()
	d.up.Set(0)
	d.outages.Inc()
	d.log.Warn(d.name+" is down; retrying until it answers", zap.String("call", what), zap.Error(err))
}

// Succeeded records a successful call: after an outage it logs once how
// long the dependency was down.
func (d *Dependency) Succeeded() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.down {
		return
	}
	d.down, d.lastErr = false, nil
	d.up.Set(1)
	d.log.Info(d.name+" is back", zap.Duration("down_for", time.Since(d.since)))
}

// Check is a readiness check: it fails while the dependency is down.
func (d *Dependency) Check(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return fmt.Errorf("%s down since %s: %w", d.name, d.since.UTC().Format(time.RFC3339), d.lastErr)
	}
	return nil
}

// Retry calls op until it succeeds, returns a Permanent error, or ctx
// ends, waiting a jittered, doubling backoff between tries. It returns
// nil, the permanent error, or ctx's error joined with the last failure.
func (d *Dependency) Retry(ctx context.Context, what string, op func(context.Context) error) error {
	var b Backoff
	for {
		err := op(ctx)
		if err == nil {
			d.Succeeded()
			return nil
		}
		if p, ok := errors.AsType[permanentError](err); ok {
			return p.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		d.Failed(what, err)
		if !b.Wait(ctx) {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
	}
}

// Backoff is a capped exponential backoff with jitter; the zero value
// starts at MinBackoff.
type Backoff struct {
	next time.Duration
}

// Next returns how long to wait before the next try.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = MinBackoff
	}
	bound := b.next
	b.next = min(2*b.next, MaxBackoff)
	return bound/2 + rand.N(bound/2+1)
}

// Reset starts the next wait at MinBackoff again.
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps for Next, or until ctx ends (then it returns false).
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Permanent marks err as one that retrying cannot fix (a configuration
// error): Retry returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	_, ok := errors.AsType[permanentError](err)
	return ok
}
