// Package intake is the collector's HTTP edge: it accepts events from sites
// and servers, applies the privacy rules at the door and hands valid hits to
// Kafka, answering 2xx only after Kafka acknowledged them.
package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/collector/internal/clientip"
	"github.com/aluminiapp/pipeline/collector/internal/exclusion"
	"github.com/aluminiapp/pipeline/collector/internal/ratelimit"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
)

// OptOutCookie is the cookie, set on the collector's domain, whose presence
// drops every hit of that browser for every client.
const OptOutCookie = "alumini_optout"

// VisitorCookie holds the first-party visitor id of clients in cookie mode.
const VisitorCookie = "alumini_vid"

// Publisher hands messages to Kafka and returns once they are acknowledged.
type Publisher interface {
	// Admit returns once there is room for more events, or with an error
	// when there was none within the ack timeout; called before a request
	// is decoded.
	Admit() error
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

// Paths are the public endpoints whose paths an operator may change, so a
// client can serve them under its own domain with names ad-blockers do not
// list. The Segment-spec paths (/v1/...) are fixed: SDKs append them to a
// configurable host.
type Paths struct {
	Event  string // POST, one native event; default /api/event
	Batch  string // POST, many native events; default /api/batch
	Pixel  string // GET, 1x1 GIF beacon; default /p.gif
	Script string // GET, the tracker script; default /t.js
	OptOut string // GET/POST; default /optout
	OptIn  string // GET/POST; default /optin
}

// DefaultPaths are the endpoint paths when nothing else is configured.
var DefaultPaths = Paths{Event: "/api/event", Batch: "/api/batch", Pixel: "/p.gif", Script: "/t.js", OptOut: "/optout", OptIn: "/optin"}

// Config is what a Handler needs.
type Config struct {
	// Clients is the client registry; each client's rate limit, exclusions
	// and server keys come from it.
	Clients   registry.Registry
	Publisher Publisher
	Health    *service.Health
	Log       *zap.Logger
	Metrics   prometheus.Registerer
	// Proxies says whose X-Forwarded-For is believed; nil trusts nobody.
	Proxies *clientip.Resolver
	Paths   Paths
	// Script is the tracker script served at Paths.Script; empty serves 404.
	Script []byte

	// MaxBodyBytes caps a request body after decompression (the server caps
	// it before). MaxBatchEvents caps the events of one batch request.
	MaxBodyBytes   int
	MaxBatchEvents int
	// MaxInflightBytes caps the request bytes held by requests still being
	// handled (mostly waiting for Kafka); past it the collector answers 503,
	// so memory stays bounded while Kafka is slow or down.
	MaxInflightBytes int64
	// Default per-client limit (events per second, burst) for clients whose
	// registry entry does not set one, and the per-address limit (requests per second,
	// burst). 0 disables a limit.
	ClientRate  float64
	ClientBurst int
	IPRate      float64
	IPBurst     int
	// Now is the clock hits are received by; time.Now when nil.
	Now func() time.Time
	// CookieSecret, when set, keys the ids of new visitor cookies, made
	// from the client and event id of the hit that makes the visitor, so
	// that a retry without the cookie gets the same one; empty: random ids.
	CookieSecret []byte
}

// Handler serves the collector's public endpoints.
type Handler struct {
	cfg      Config
	now      func() time.Time
	clientRL *ratelimit.Keyed
	ipRL     *ratelimit.Keyed
	excluded *exclusion.Cache
	inflight atomic.Int64
	// unreadable logs requests refused before the handler, a few a
	// second per reason.
	unreadable *zap.Logger
	// maxHeaderBytes is the server's read buffer, the largest head it
	// reads (set by NewServer).
	maxHeaderBytes int
	script         scriptAsset

	requests *prometheus.CounterVec
	accepted prometheus.Counter
	dropped  *prometheus.CounterVec
	// The children of requests and dropped, resolved once: looking a
	// child up hashes its label values, on every request otherwise.
	requestsBy   [len(endpointLabels)]codeCounters
	durationBy   [len(endpointLabels)]prometheus.Observer
	duration     *prometheus.HistogramVec
	droppedBy    map[string]prometheus.Counter
	batchSize    prometheus.Histogram
	inflightGage prometheus.GaugeFunc
	// refusals logs refused requests, a few a second per reason.
	refusals *zap.Logger
}

// New returns a Handler whose metrics are registered on cfg.Metrics.
func New(cfg Config) *Handler {
	if cfg.Proxies == nil {
		cfg.Proxies = &clientip.Resolver{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Health == nil {
		cfg.Health = service.NewHealth()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxBatchEvents <= 0 {
		cfg.MaxBatchEvents = 500
	}
	if cfg.MaxInflightBytes <= 0 {
		cfg.MaxInflightBytes = 64 << 20
	}
	if cfg.ClientBurst < cfg.MaxBatchEvents {
		// A batch takes one token per event: a smaller burst would refuse
		// every full batch forever.
		cfg.ClientBurst = cfg.MaxBatchEvents
	}
	p := &cfg.Paths
	for _, f := range []struct {
		dst *string
		def string
	}{
		{&p.Event, DefaultPaths.Event}, {&p.Batch, DefaultPaths.Batch}, {&p.Pixel, DefaultPaths.Pixel},
		{&p.Script, DefaultPaths.Script}, {&p.OptOut, DefaultPaths.OptOut}, {&p.OptIn, DefaultPaths.OptIn},
	} {
		if *f.dst == "" {
			*f.dst = f.def
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:      cfg,
		now:      cfg.Now,
		clientRL: ratelimit.New(100_000),
		ipRL:     ratelimit.New(1_000_000),
		excluded: exclusion.NewCache(cfg.Clients),
		refusals: refusalLog(cfg.Log),
		script:   newScriptAsset(cfg.Script),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_collector_requests_total",
			Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		// Unlabelled: requests_total already splits traffic by endpoint, and
		// dashboards and the end-to-end test read this one series.
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_collector_events_accepted_total",
			Help: "Events acknowledged by Kafka and answered with 2xx.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_collector_events_dropped_total",
			Help: "Events not sent to Kafka, by reason (opt_out, dnt, gpc, excluded_ip, excluded_hostname, excluded_path, unsupported_type, invalid, unknown_client, forbidden_origin, rate_limited, too_large, overloaded, unavailable, header_too_large, malformed_request, read_timeout).",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "alumini_collector_request_duration_seconds",
			Help:    "Time from reading a request to handing over its answer, by endpoint; for intake endpoints it includes waiting for Kafka's acknowledgement.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_collector_batch_events",
			Help:    "Events per accepted request, as produced to Kafka in one write.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
	}
	h.unreadable = unreadableLog(cfg.Log)
	h.inflightGage = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alumini_collector_inflight_bytes",
		Help: "Bytes reserved by requests in progress: bodies being read and decoded, events waiting for Kafka (bounded by -max-inflight-bytes).",
	}, func() float64 { return float64(h.inflight.Load()) })
	cfg.Metrics.MustRegister(h.requests, h.accepted, h.dropped, h.duration, h.batchSize, h.inflightGage)
	for i, l := range endpointLabels {
		h.durationBy[i] = h.duration.WithLabelValues(l)
	}
	// The server-error series the alerts divide by exist at zero from the
	// start, so that the first 5xx after a start is an increase.
	for i := range endpointLabels {
		for _, code := range []int{fasthttp.StatusInternalServerError, fasthttp.StatusServiceUnavailable} {
			h.requestCount(i, code)
		}
	}
	h.droppedBy = make(map[string]prometheus.Counter, len(dropReasons))
	for _, r := range dropReasons {
		h.droppedBy[r] = h.dropped.WithLabelValues(r)
	}
	return h
}

// Endpoint labels of alumini_collector_requests_total; route returns an
// index into this list.
var endpointLabels = [...]string{"event", "batch", "segment_track", "segment_page", "segment_screen", "segment_identify", "segment_batch",
	"pixel", "script", "optout", "optin", "healthz", "readyz", "other", "unreadable", "segment_other", "umami"}

const (
	labelEvent = iota
	labelBatch
	labelSegTrack
	labelSegPage
	labelSegScreen
	labelSegIdentify
	labelSegBatch
	labelPixel
	labelScript
	labelOptOut
	labelOptIn
	labelHealthz
	labelReadyz
	labelOther
	labelUnreadable
	labelSegOther
	labelUmami
)

// dropReasons are the reasons of alumini_collector_events_dropped_total
// the collector gives.
var dropReasons = []string{"opt_out", "dnt", "gpc", "excluded_ip", "excluded_hostname", "excluded_path", "unsupported_type",
	"invalid", "unknown_client", "forbidden_origin", "rate_limited", "too_large", "overloaded", "unavailable",
	"header_too_large", "malformed_request", "read_timeout"}

// dropCount is the dropped counter of a reason.
func (h *Handler) dropCount(reason string) prometheus.Counter {
	if c, ok := h.droppedBy[reason]; ok {
		return c
	}
	return h.dropped.WithLabelValues(reason)
}

// codeCounters are one endpoint's request counters by status code, each
// made on first use.
type codeCounters [600]atomic.Pointer[prometheus.Counter]

// requestCount is the request counter of an endpoint and status code.
func (h *Handler) requestCount(label, status int) prometheus.Counter {
	if status < 0 || status >= len(codeCounters{}) {
		return h.requests.WithLabelValues(endpointLabels[label], strconv.Itoa(status))
	}
	slot := &h.requestsBy[label][status]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := h.requests.WithLabelValues(endpointLabels[label], strconv.Itoa(status))
	slot.Store(&c) // a racing request stores the same child: the vector hands out one per labels.
	return c
}

// Serve routes a request. It is the fasthttp server's handler.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	if conflictingFraming(&ctx.Request.Header) {
		h.ServeError(ctx, errConflictingFraming)
		return
	}
	label := h.route(ctx)
	h.requestCount(label, ctx.Response.StatusCode()).Inc()
	// ctx.Time is when fasthttp began serving the request.
	h.durationBy[label].Observe(time.Since(ctx.Time()).Seconds())
}

// route serves a request and returns its endpoint label's index.
func (h *Handler) route(ctx *fasthttp.RequestCtx) int {
	p := &h.cfg.Paths
	switch path := string(ctx.Path()); path {
	case p.Event:
		h.serveIntake(ctx, epEvent)
		return labelEvent
	case p.Batch:
		h.serveIntake(ctx, epBatch)
		return labelBatch
	case "/v1/track", "/v1/t": // analytics.js posts to the short paths
		h.serveIntake(ctx, epSegTrack)
		return labelSegTrack
	case "/v1/page", "/v1/p":
		h.serveIntake(ctx, epSegPage)
		return labelSegPage
	case "/v1/screen", "/v1/s":
		h.serveIntake(ctx, epSegScreen)
		return labelSegScreen
	case "/v1/identify", "/v1/i":
		h.serveIntake(ctx, epSegIdentify)
		return labelSegIdentify
	case "/v1/batch", "/v1/b", "/v1/import":
		h.serveIntake(ctx, epSegBatch)
		return labelSegBatch
	case "/v1/group", "/v1/g", "/v1/alias", "/v1/a":
		h.serveIntake(ctx, epSegOther)
		return labelSegOther
	case "/api/send":
		h.serveIntake(ctx, epUmami)
		return labelUmami
	case p.Pixel:
		h.serveIntake(ctx, epPixel)
		return labelPixel
	case p.Script:
		h.serveScript(ctx)
		return labelScript
	case p.OptOut:
		h.serveOptOut(ctx, true)
		return labelOptOut
	case p.OptIn:
		h.serveOptOut(ctx, false)
		return labelOptIn
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
		return labelHealthz
	case "/readyz":
		status, body := h.cfg.Health.ReadyResponse(ctx)
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
		return labelReadyz
	default:
		writeError(ctx, fasthttp.StatusNotFound, "no such endpoint: "+path)
		return labelOther
	}
}

// ServeError answers requests fasthttp could not read, as the server's
// ErrorHandler: without it an oversized body or head would get a bare 400.
func (h *Handler) ServeError(ctx *fasthttp.RequestCtx, err error) {
	var status int
	var reason, msg string
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, reason, msg = fasthttp.StatusRequestEntityTooLarge, "too_large", "request body is larger than the collector accepts"
	case errors.As(err, &small):
		status, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "header_too_large"
		msg = fmt.Sprintf("request line and headers are larger than the %d bytes the collector reads; send fewer or smaller cookies", h.maxHeaderBytes)
	case isTimeout(err):
		status, reason, msg = fasthttp.StatusRequestTimeout, "read_timeout", "request was not received in time"
	case errors.Is(err, errConflictingFraming):
		status, reason, msg = fasthttp.StatusBadRequest, "malformed_request", err.Error()
	default:
		status, reason, msg = fasthttp.StatusBadRequest, "malformed_request", "malformed HTTP request: "+err.Error()
	}
	ctx.SetConnectionClose()
	writeError(ctx, status, msg)
	h.dropCount(reason).Inc()
	// What was wrong, not the request's bytes (cookies) nor its address.
	h.unreadable.Info("request refused: "+reason, zap.String("reason", reason), zap.Int("status", status), zap.String("error", msg))
	h.requestCount(labelUnreadable, status).Inc()
}

var errConflictingFraming = errors.New("request has both Content-Length and Transfer-Encoding")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clientIP is the visitor's address as the collector sees it: the peer, or
// what a trusted proxy forwarded.
func (h *Handler) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP()) // an invalid peer stays the zero Addr.
	return h.cfg.Proxies.ClientIP(peer, string(ctx.Request.Header.Peek("X-Forwarded-For")), string(ctx.Request.Header.Peek("X-Real-IP")))
}

// isHTTPS reports whether the visitor's connection is encrypted: TLS here,
// or a trusted proxy saying it terminated TLS.
func (h *Handler) isHTTPS(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsTLS() {
		return true
	}
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return h.cfg.Proxies.Trusted(peer) && string(ctx.Request.Header.Peek("X-Forwarded-Proto")) == "https"
}

func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	body, _ := json.Marshal(struct { // a string always marshals.
		Error string `json:"error"`
	}{msg})
	ctx.SetBody(body)
}
