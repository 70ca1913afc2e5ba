package api

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Defaults of the limits a zero Config field leaves open; the reporter's
// flags default to the same values (docs/reporter.md, "Limits and abuse").
const (
	// DefaultAuthFailureRate and DefaultAuthFailureBurst: an address may
	// fail to authenticate 20 times at once, then once every 10 s.
	DefaultAuthFailureRate  = 0.1
	DefaultAuthFailureBurst = 20
	// DefaultLimiterEntries bounds each limiter table (keys, addresses).
	DefaultLimiterEntries = 100_000
	// DefaultErasureRate and DefaultErasureBurst: erasure requests one
	// client may make: 100 at once, then one every 5 s.
	DefaultErasureRate  = 0.2
	DefaultErasureBurst = 100
)

// limiterIdle is how long a bucket nobody touched is kept: longer than any
// bucket of the defaults takes to refill, after which a new bucket behaves
// the same.
const limiterIdle = 30 * time.Minute

// buckets is a bounded table of token buckets, one per key (an API key's
// hash, an address, a client): a flood of distinct keys evicts the least
// used buckets instead of growing memory. An evicted bucket comes back
// full, which at worst lets its key through early.
type buckets struct {
	limit rate.Limit
	burst int
	table *otter.Cache[string, *rate.Limiter]
}

func newBuckets(perSecond float64, burst, maxEntries int) *buckets {
	return &buckets{
		limit: rate.Limit(perSecond), burst: burst,
		table: otter.Must(&otter.Options[string, *rate.Limiter]{
			MaximumSize:      maxEntries,
			ExpiryCalculator: otter.ExpiryAccessing[string, *rate.Limiter](limiterIdle),
		}),
	}
}

func (b *buckets) get(key string) *rate.Limiter {
	if l, ok := b.table.GetIfPresent(key); ok {
		return l
	}
	l, _ := b.table.SetIfAbsent(key, rate.NewLimiter(b.limit, b.burst))
	return l
}

// take takes one token of key's bucket; when there is none it takes
// nothing and says how long to wait.
func (b *buckets) take(key string, now time.Time) (time.Duration, bool) {
	res := b.get(key).ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// wait says how long key must wait for its next token, without taking one.
func (b *buckets) wait(key string, now time.Time) time.Duration {
	l, ok := b.table.GetIfPresent(key)
	if !ok {
		return 0
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.limit) * float64(time.Second))
}

// limits are the handler's abuse limits: requests per API key, failed
// authentications per client address, erasure requests per client.
type limits struct {
	keys, authFailures, erasures *buckets
	limited                      *prometheus.CounterVec
}

func newLimits(cfg *Config) *limits {
	if cfg.AuthFailureRate <= 0 {
		cfg.AuthFailureRate = DefaultAuthFailureRate
	}
	if cfg.AuthFailureBurst < 1 {
		cfg.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if cfg.LimiterEntries < 1 {
		cfg.LimiterEntries = DefaultLimiterEntries
	}
	if cfg.ErasureRate <= 0 {
		cfg.ErasureRate = DefaultErasureRate
	}
	if cfg.ErasureBurst < 1 {
		cfg.ErasureBurst = DefaultErasureBurst
	}
	l := &limits{
		keys:         newBuckets(cfg.RateLimit, cfg.RateBurst, cfg.LimiterEntries),
		authFailures: newBuckets(cfg.AuthFailureRate, cfg.AuthFailureBurst, cfg.LimiterEntries),
		erasures:     newBuckets(cfg.ErasureRate, cfg.ErasureBurst, cfg.LimiterEntries),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_reporter_rate_limited_total",
			Help: "API requests refused with 429, by limit: key (the key's request rate), auth_failures (the address failed to authenticate too often), erasures (the client's erasure requests).",
		}, []string{"limit"}),
	}
	// Each limit's series exists from the start, at 0: a rate() over it
	// then answers 0 rather than nothing.
	for _, name := range []string{limitKey, limitAuthFailures, limitErasures} {
		l.limited.WithLabelValues(name)
	}
	return l
}

// Labels of alumini_reporter_rate_limited_total.
const (
	limitKey          = "key"
	limitAuthFailures = "auth_failures"
	limitErasures     = "erasures"
)

// tooMany answers 429 with Retry-After in whole seconds.
func (l *limits) tooMany(w http.ResponseWriter, which string, wait time.Duration, msg string) int {
	l.limited.WithLabelValues(which).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	return writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%s; retry after %s", msg, wait.Round(time.Millisecond)))
}

// clientAddress is the address failed authentications are counted by: the
// TCP peer (the reporter trusts no forwarding header), and of an IPv6 peer
// its /64, which one host usually holds whole.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// authBlocked answers 429 when the request's address has no failed
// authentication left. Every request of the address is refused then,
// valid keys too: answering a right guess differently from a wrong one
// would let the guessing go on.
func (h *Handler) authBlocked(w http.ResponseWriter, r *http.Request) (int, bool) {
	d := h.limits.authFailures.wait(clientAddress(r), h.now())
	if d <= 0 {
		return 0, false
	}
	return h.limits.tooMany(w, limitAuthFailures, d, "too many failed authentications from this address"), true
}

// authFailed counts a failed authentication of the request's address.
func (h *Handler) authFailed(r *http.Request) {
	h.limits.authFailures.take(clientAddress(r), h.now())
}
