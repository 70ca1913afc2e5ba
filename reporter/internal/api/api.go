// Package api serves the reporter's HTTP API: it authenticates clients by
// their secret API keys (and operators by the operator key), parses report
// parameters, runs the scoped queries and answers with JSON.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/clientfile"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// Config is what a Handler needs.
type Config struct {
	// Registry resolves API keys to clients.
	Registry registry.Registry
	// Store runs the queries.
	Store *query.Store
	// Clients edits the registry file for the operator endpoints; nil
	// turns those endpoints off.
	Clients *clientfile.File
	// OperatorKeyHash is registry.HashAPIKey of the operator key; empty
	// turns the operator endpoints off.
	OperatorKeyHash string
	Log             *zap.Logger
	// Metrics receives the request metrics.
	Metrics prometheus.Registerer
	// QueryTimeout bounds each request's queries.
	QueryTimeout time.Duration
	// RateLimit is the steady requests per second one key may make, and
	// RateBurst how many it may make at once.
	RateLimit float64
	RateBurst int
	// AuthFailureRate and AuthFailureBurst limit the failed
	// authentications of one client address; ErasureRate and ErasureBurst
	// the erasure requests of one client; LimiterEntries bounds each of
	// these tables. Zero means the Default of each.
	AuthFailureRate  float64
	AuthFailureBurst int
	ErasureRate      float64
	ErasureBurst     int
	LimiterEntries   int
	// MaxRows bounds the rows of a breakdown, MaxExport the events of an
	// export.
	MaxRows, MaxExport int
	// TrendsMinClients is the smallest group of clients a trends row may
	// describe.
	TrendsMinClients int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler is the reporter's HTTP API.
type Handler struct {
	cfg      Config
	now      func() time.Time
	routes   map[string]route
	limits   *limits
	zones    sync.Map // IANA name -> *time.Location of the clients' zones
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// route is one endpoint: its metric label, the methods it accepts and the
// function that serves each.
type route struct {
	endpoint string
	methods  map[string]func(w http.ResponseWriter, r *http.Request) int
}

// notFoundEndpoint labels the metrics of requests to unknown paths; the
// path itself is not a label, as that would be unbounded.
const notFoundEndpoint = "not_found"

// Paths of the API.
const (
	AggregatePath   = "/api/v1/stats/aggregate"
	TimeseriesPath  = "/api/v1/stats/timeseries"
	BreakdownPath   = "/api/v1/stats/breakdown"
	RealtimePath    = "/api/v1/stats/realtime"
	FunnelPath      = "/api/v1/stats/funnel"
	RetentionPath   = "/api/v1/stats/retention"
	ExportPath      = "/api/v1/visitors/export"
	ErasurePath     = "/api/v1/visitors/erasure"
	OpClientsPath   = "/api/v1/operator/clients"
	OpKeysPath      = "/api/v1/operator/clients/keys"
	OpTrendsPath    = "/api/v1/operator/trends"
	OpenAPIPath     = "/api/v1/openapi.json"
	maxBodyBytes    = 64 << 10
	currentVisitors = 5 * time.Minute
)

// New returns a Handler and registers its metrics.
func New(cfg Config) (*Handler, error) {
	if cfg.Registry == nil || cfg.Store == nil || cfg.Log == nil || cfg.Metrics == nil {
		return nil, errors.New("api: Registry, Store, Log and Metrics are required")
	}
	if cfg.QueryTimeout <= 0 || cfg.RateLimit <= 0 || cfg.RateBurst < 1 || cfg.MaxRows < 1 || cfg.MaxExport < 1 || cfg.TrendsMinClients < 2 {
		return nil, errors.New("api: QueryTimeout, RateLimit, RateBurst, MaxRows, MaxExport must be positive and TrendsMinClients at least 2")
	}
	h := &Handler{
		cfg: cfg,
		now: cfg.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_reporter_requests_total",
			Help: "API requests answered, by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "alumini_reporter_request_duration_seconds",
			Help:    "Time taken to answer an API request, by endpoint.",
			Buckets: prometheus.DefBuckets,
		}, []string{"endpoint"}),
	}
	h.limits = newLimits(&h.cfg)
	if h.now == nil {
		h.now = time.Now
	}
	for _, c := range []prometheus.Collector{h.requests, h.duration, h.limits.limited} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("registering api metrics: %w", err)
		}
	}
	type fn = func(w http.ResponseWriter, r *http.Request) int
	get := func(f fn) map[string]fn { return map[string]fn{http.MethodGet: f, http.MethodHead: f} }
	h.routes = map[string]route{
		AggregatePath:  {"aggregate", get(h.client(h.serveAggregate))},
		TimeseriesPath: {"timeseries", get(h.client(h.serveTimeseries))},
		BreakdownPath:  {"breakdown", get(h.client(h.serveBreakdown))},
		RealtimePath:   {"realtime", get(h.client(h.serveRealtime))},
		FunnelPath:     {"funnel", get(h.client(h.serveFunnel))},
		RetentionPath:  {"retention", get(h.client(h.serveRetention))},
		ExportPath:     {"export", get(h.client(h.serveExport))},
		ErasurePath: {"erasure", map[string]fn{
			http.MethodGet: h.client(h.serveErasureStatus), http.MethodHead: h.client(h.serveErasureStatus),
			http.MethodPost: h.client(h.serveErase),
		}},
		OpClientsPath: {"operator_clients", map[string]fn{
			http.MethodGet: h.operator(h.serveListClients), http.MethodHead: h.operator(h.serveListClients),
			http.MethodPost: h.operator(h.serveAddClient), http.MethodPatch: h.operator(h.serveUpdateClient),
		}},
		OpKeysPath:   {"operator_keys", map[string]fn{http.MethodPost: h.operator(h.serveIssueKey)}},
		OpTrendsPath: {"operator_trends", get(h.operator(h.serveTrends))},
		OpenAPIPath:  {"openapi", get(serveOpenAPI)},
		StatsV2Path:  {"stats_v2", map[string]fn{http.MethodPost: h.client(h.serveStatsV2)}},
	}
	// The server-error series the alerts divide by exist at zero from the
	// start, so that the first 5xx after a start is an increase.
	for _, rt := range h.routes {
		for _, code := range serverErrorCodes {
			h.requests.WithLabelValues(rt.endpoint, code)
		}
		h.duration.WithLabelValues(rt.endpoint)
	}
	return h, nil
}

// serverErrorCodes are the 5xx statuses the reporter answers with.
var serverErrorCodes = []string{"500", "503", "504"}

// Routes lists the paths and methods the handler serves, for the OpenAPI
// test.
func (h *Handler) Routes() map[string][]string {
	out := map[string][]string{}
	for p, rt := range h.routes {
		for m := range rt.methods {
			out[p] = append(out[p], m)
		}
		sort.Strings(out[p])
	}
	return out
}

// ServeHTTP routes by exact path. It does not use http.ServeMux, whose
// automatic redirects and 405 answers are plain text, not JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Cache-Control", "no-store") // reports are private to one client.
	w.Header().Set("X-Content-Type-Options", "nosniff")

	rt, ok := h.routes[r.URL.Path]
	endpoint := notFoundEndpoint
	var status int
	switch {
	case !ok:
		status = writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", truncate(r.URL.Path)))
	case rt.methods[r.Method] == nil:
		endpoint = rt.endpoint
		allow := make([]string, 0, len(rt.methods))
		for m := range rt.methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		status = writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", r.Method, strings.Join(allow, " or ")))
	default:
		endpoint = rt.endpoint
		status = rt.methods[r.Method](w, r)
	}
	elapsed := time.Since(start)
	h.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	h.duration.WithLabelValues(endpoint).Observe(elapsed.Seconds())
	h.cfg.Log.Debug("request",
		zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.Duration("duration", elapsed))
}

// Messages of 401 answers. A key that is not known and a known key asking
// for another client's data get the very same answer, so a key cannot be
// used to find out which client ids exist.
const (
	msgMissingKey = "missing API key: send it as the header Authorization: Bearer <api key>"
	msgInvalidKey = "invalid API key, or the key does not grant access to this client"
)

// client wraps a handler of one client's data: it authenticates the key,
// applies the key's rate limit and hands over the client's query scope.
func (h *Handler) client(serve func(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		key, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			return writeUnauthorized(w, msgMissingKey)
		}
		if status, blocked := h.authBlocked(w, r); blocked {
			return status
		}
		client, err := h.cfg.Registry.ByAPIKey(key)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			h.authFailed(r)
			h.cfg.Log.Debug("unknown API key", zap.String("remote_addr", r.RemoteAddr))
			return writeUnauthorized(w, msgInvalidKey)
		case err != nil:
			h.cfg.Log.Error("looking up API key", zap.Error(err))
			return writeError(w, http.StatusInternalServerError, "internal error: looking up the API key failed")
		}
		if ids, asked := r.URL.Query()["client_id"]; asked && (len(ids) != 1 || ids[0] != client.ID) {
			h.authFailed(r)
			h.cfg.Log.Info("API key used for another client", zap.String("client_id", client.ID), zap.String("remote_addr", r.RemoteAddr))
			return writeUnauthorized(w, msgInvalidKey)
		}
		if status, limited := h.limit(w, key); limited {
			return status
		}
		scope, err := query.ScopeOf(client)
		if err != nil {
			return writeUnauthorized(w, msgInvalidKey)
		}
		return serve(w, r, client, scope)
	}
}

// operator wraps a handler of the operator endpoints: the key must hash to
// the configured operator key hash.
func (h *Handler) operator(serve func(w http.ResponseWriter, r *http.Request) int) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		if h.cfg.OperatorKeyHash == "" {
			return writeError(w, http.StatusNotFound, "operator endpoints are off: start the reporter with -operator-key-hash")
		}
		key, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			return writeUnauthorized(w, msgMissingKey)
		}
		if status, blocked := h.authBlocked(w, r); blocked {
			return status
		}
		if subtle.ConstantTimeCompare([]byte(registry.HashAPIKey(key)), []byte(h.cfg.OperatorKeyHash)) != 1 {
			h.authFailed(r)
			return writeUnauthorized(w, "invalid operator key")
		}
		if status, limited := h.limit(w, key); limited {
			return status
		}
		return serve(w, r)
	}
}

// limit applies the per-key token bucket; it answers 429 with Retry-After
// itself when the key is over its rate. It runs once the key is known
// valid, so the table holds the keys in use; wrong keys are limited per
// address (authBlocked).
func (h *Handler) limit(w http.ResponseWriter, key string) (int, bool) {
	if d, ok := h.limits.keys.take(registry.HashAPIKey(key), h.now()); !ok {
		return h.limits.tooMany(w, limitKey, d, fmt.Sprintf("rate limit of %g requests per second exceeded", h.cfg.RateLimit)), true
	}
	return 0, false
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 9110).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func writeUnauthorized(w http.ResponseWriter, msg string) int {
	w.Header().Set("WWW-Authenticate", `Bearer realm="alumini"`)
	return writeError(w, http.StatusUnauthorized, msg)
}

// statusClientClosedRequest is nginx's code for a client that hung up
// before the answer; it keeps such requests out of the 5xx counts.
const statusClientClosedRequest = 499

// queryFailed answers a failed query: the caller's own mistakes as 400 or
// 413 with their message, timeouts as 504, everything else as a 500 whose
// body never carries ClickHouse's text (it could echo SQL or data).
func (h *Handler) queryFailed(w http.ResponseWriter, r *http.Request, name, clientID string, err error) int {
	switch {
	case errors.Is(err, query.ErrBadParam), errors.Is(err, query.ErrBadRange):
		return writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, query.ErrTooLarge):
		return writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case r.Context().Err() != nil:
		h.cfg.Log.Debug("client went away during the query", zap.String("client_id", clientID))
		return writeError(w, statusClientClosedRequest, "request cancelled")
	case unreachable(err):
		// Not the query's fault, and it passes: the client may retry.
		h.cfg.Log.Warn("clickhouse unreachable", zap.String("query", name), zap.String("client_id", clientID), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return writeError(w, http.StatusServiceUnavailable, "reports are unavailable for a moment: the database does not answer; retry shortly")
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "TIMEOUT_EXCEEDED") || strings.Contains(err.Error(), "Timeout exceeded"):
		h.cfg.Log.Warn("query timed out", zap.String("query", name), zap.String("client_id", clientID), zap.Duration("timeout", h.cfg.QueryTimeout), zap.Error(err))
		return writeError(w, http.StatusGatewayTimeout, "the query took too long; try a shorter range or fewer filters")
	default:
		h.cfg.Log.Error("query failed", zap.String("query", name), zap.String("client_id", clientID), zap.Error(err))
		return writeError(w, http.StatusInternalServerError, "internal error: the query failed")
	}
}

// unreachable tells a ClickHouse that does not answer (connections
// refused, reset or dropped, none to be had) from a query that failed.
func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, clickhouse.ErrAcquireConnTimeout)
}

// errorResponse is the body of every error answer.
type errorResponse struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) int {
	return writeJSON(w, status, errorResponse{Error: msg})
}

// writeJSON writes v as the response and returns status, for the metrics.
func writeJSON(w http.ResponseWriter, status int, v any) int {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // API clients, not browsers, read these bodies: keep "<api key>" legible.
	var body []byte
	if err := enc.Encode(v); err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error: encoding the response failed"}`+"\n")
	} else {
		body = buf.Bytes()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a write error means the client hung up; nothing to tell it.
	return status
}

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI)
	return http.StatusOK
}
