package intake

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// DefaultMaxHeaderBytes is the largest request head (request line and
// headers) read by default: browsers send a site's own cookies with every
// first-party hit, and Chrome's heads reach 8-12 KiB on sites with many
// cookies; fasthttp's own default (4 KiB) lost those hits.
const DefaultMaxHeaderBytes = 16 << 10

// ServerConfig is how the collector's HTTP server is run; the Handler's
// Config holds the limits on bodies and on bytes in flight.
type ServerConfig struct {
	// MaxHeaderBytes caps a request's head; larger heads get 431. It is
	// also the size of each connection's read buffer.
	MaxHeaderBytes int
	// MaxConcurrency caps the connections served at once.
	MaxConcurrency int
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
}

// NewServer returns the fasthttp server that serves h. Bodies are streamed
// (StreamRequestBody): the handler sees the head and at most 8 KiB of the
// body, and admits the rest against -max-inflight-bytes before reading it
// (readRaw), so that memory is bounded by configuration whatever clients
// send, not by connections × body limit.
func NewServer(h *Handler, sc ServerConfig) *fasthttp.Server {
	if sc.MaxHeaderBytes <= 0 {
		sc.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	h.maxHeaderBytes = sc.MaxHeaderBytes
	srv := &fasthttp.Server{
		Handler:            h.Serve,
		ErrorHandler:       h.ServeError,
		Name:               "alumini",
		Concurrency:        sc.MaxConcurrency,
		ReadBufferSize:     sc.MaxHeaderBytes,
		MaxRequestBodySize: h.cfg.MaxBodyBytes,
		StreamRequestBody:  true,
		ReadTimeout:        sc.ReadTimeout,
		WriteTimeout:       sc.WriteTimeout,
		IdleTimeout:        60 * time.Second,
		NoDefaultDate:      true,
		// Errors about a request name what was wrong, not the request's
		// bytes (cookies, addresses).
		SecureErrorLogMessage: true,
		// fasthttp logs connections refused past Concurrency at most once
		// a minute itself; requests it cannot read go to ServeError.
		Logger: zap.NewStdLog(h.cfg.Log),
	}
	// Connections past Concurrency are refused (503) before any handler
	// sees them: counted by fasthttp, exported here.
	h.cfg.Metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "alumini_collector_connections_refused_total",
		Help: "Connections refused with 503 because -max-concurrency connections were being served.",
	}, func() float64 { return float64(srv.GetRejectedConnectionsCount()) }))
	return srv
}
