// Package api serves the reporter's HTTP API: it authenticates clients by
// their secret API keys, parses report parameters and answers with JSON.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// AggregatePath is the path of the totals endpoint.
const AggregatePath = "/api/v1/stats/aggregate"

// Aggregator answers totals queries; *query.Store is the implementation.
type Aggregator interface {
	Aggregate(ctx context.Context, clientID string, r query.Range) (query.Totals, error)
}

// Config is what a Handler needs.
type Config struct {
	// Registry resolves API keys to clients.
	Registry registry.Registry
	// Store runs the queries.
	Store Aggregator
	Log   *zap.Logger
	// Metrics receives the request metrics.
	Metrics prometheus.Registerer
	// QueryTimeout bounds each ClickHouse query.
	QueryTimeout time.Duration
	// Now is the clock for default ranges; nil means time.Now.
	Now func() time.Time
}

// Handler is the reporter's HTTP API.
type Handler struct {
	reg          registry.Registry
	store        Aggregator
	log          *zap.Logger
	queryTimeout time.Duration
	now          func() time.Time
	routes       map[string]route
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
}

// route is one endpoint: its metric label, the methods it accepts and the
// function that serves it and returns the status it answered with.
type route struct {
	endpoint string
	methods  []string
	serve    func(w http.ResponseWriter, r *http.Request) int
}

// notFoundEndpoint labels the metrics of requests to unknown paths; the
// path itself is not a label, as that would be unbounded.
const notFoundEndpoint = "not_found"

// New returns a Handler and registers its metrics.
func New(cfg Config) (*Handler, error) {
	if cfg.Registry == nil || cfg.Store == nil || cfg.Log == nil || cfg.Metrics == nil {
		return nil, errors.New("api: Registry, Store, Log and Metrics are required")
	}
	if cfg.QueryTimeout <= 0 {
		return nil, errors.New("api: QueryTimeout must be positive")
	}
	h := &Handler{
		reg:          cfg.Registry,
		store:        cfg.Store,
		log:          cfg.Log,
		queryTimeout: cfg.QueryTimeout,
		now:          cfg.Now,
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
	if h.now == nil {
		h.now = time.Now
	}
	for _, c := range []prometheus.Collector{h.requests, h.duration} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("registering api metrics: %w", err)
		}
	}
	h.routes = map[string]route{
		AggregatePath: {endpoint: "aggregate", methods: []string{http.MethodGet, http.MethodHead}, serve: h.serveAggregate},
	}
	return h, nil
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
		status = writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	case !allowed(rt.methods, r.Method):
		endpoint = rt.endpoint
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		status = writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", r.Method, strings.Join(rt.methods, " or ")))
	default:
		endpoint = rt.endpoint
		status = rt.serve(w, r)
	}
	elapsed := time.Since(start)
	h.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	h.duration.WithLabelValues(endpoint).Observe(elapsed.Seconds())
	h.log.Debug("request",
		zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.Duration("duration", elapsed))
}

func allowed(methods []string, m string) bool {
	for _, a := range methods {
		if a == m {
			return true
		}
	}
	return false
}

// aggregateResponse is the body of a successful aggregate request.
type aggregateResponse struct {
	ClientID string       `json:"client_id"`
	From     string       `json:"from"`
	To       string       `json:"to"`
	Results  query.Totals `json:"results"`
}

// aggregateParams are the query parameters the aggregate endpoint accepts.
var aggregateParams = map[string]bool{"client_id": true, "from": true, "to": true}

// statusClientClosedRequest is nginx's code for a client that hung up
// before the answer; it keeps such requests out of the 5xx counts.
const statusClientClosedRequest = 499

func (h *Handler) serveAggregate(w http.ResponseWriter, r *http.Request) int {
	client, status := h.authenticate(w, r)
	if client == nil {
		return status
	}
	params := r.URL.Query()
	if err := checkParams(params, aggregateParams); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	rng, err := parseRange(params, h.now())
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.queryTimeout)
	defer cancel()
	totals, err := h.store.Aggregate(ctx, client.ID, rng)
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		h.log.Debug("client went away during the query", zap.String("client_id", client.ID))
		return writeError(w, statusClientClosedRequest, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		h.log.Warn("aggregate query timed out", zap.String("client_id", client.ID), zap.Duration("timeout", h.queryTimeout), zap.Error(err))
		return writeError(w, http.StatusGatewayTimeout, "the query took too long; try a shorter range")
	default:
		h.log.Error("aggregate query failed", zap.String("client_id", client.ID), zap.Error(err))
		return writeError(w, http.StatusInternalServerError, "internal error: the query failed")
	}
	return writeJSON(w, http.StatusOK, aggregateResponse{
		ClientID: client.ID,
		From:     rng.From.UTC().Format(time.RFC3339),
		To:       rng.To.UTC().Format(time.RFC3339),
		Results:  totals,
	})
}

// checkParams rejects unknown and repeated parameters: a misspelt "form"
// must not silently fall back to the default range.
func checkParams(params map[string][]string, known map[string]bool) error {
	for name, vals := range params {
		if !known[name] {
			return fmt.Errorf("unknown parameter %q", name)
		}
		if len(vals) > 1 {
			return fmt.Errorf("parameter %q: given %d times; give it once", name, len(vals))
		}
	}
	return nil
}

// Messages of 401 answers. A key that is not known and a known key asking
// for another client's data get the very same answer, so a key cannot be
// used to find out which client ids exist.
const (
	msgMissingKey = "missing API key: send it as the header Authorization: Bearer <api key>"
	msgInvalidKey = "invalid API key, or the key does not grant access to this client"
)

// authenticate resolves the request's API key to a client, checks an
// explicit client_id against it, and answers 401 itself when either fails;
// it then returns a nil client and the status written.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*registry.Client, int) {
	key, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, writeUnauthorized(w, msgMissingKey)
	}
	client, err := h.reg.ByAPIKey(key)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		h.log.Debug("unknown API key", zap.String("remote_addr", r.RemoteAddr))
		return nil, writeUnauthorized(w, msgInvalidKey)
	case err != nil:
		h.log.Error("looking up API key", zap.Error(err))
		return nil, writeError(w, http.StatusInternalServerError, "internal error: looking up the API key failed")
	}
	if ids, asked := r.URL.Query()["client_id"]; asked && (len(ids) != 1 || ids[0] != client.ID) {
		h.log.Info("API key used for another client", zap.String("client_id", client.ID), zap.String("remote_addr", r.RemoteAddr))
		return nil, writeUnauthorized(w, msgInvalidKey)
	}
	return client, http.StatusOK
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
		// Only the response types above reach here, and they always marshal.
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
