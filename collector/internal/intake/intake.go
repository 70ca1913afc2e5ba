// Package intake is the collector's HTTP edge: it accepts events from sites
// and servers, applies the privacy rules at the door and hands valid hits to
// Kafka, answering 2xx only after Kafka acknowledged them.
package intake

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// OptOutCookie is the cookie, set on the collector's domain, whose presence
// drops every hit of that browser for every client.
const OptOutCookie = "alumini_optout"

// Publisher hands messages to Kafka and returns once they are acknowledged.
type Publisher interface {
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

// Handler serves the collector's public endpoints.
type Handler struct {
	clients registry.Registry
	pub     Publisher
	health  *service.Health
	log     *zap.Logger
	now     func() time.Time

	requests *prometheus.CounterVec
	accepted prometheus.Counter
	dropped  *prometheus.CounterVec
}

// New returns a Handler whose metrics are registered on reg.
func New(clients registry.Registry, pub Publisher, health *service.Health, log *zap.Logger, reg prometheus.Registerer) *Handler {
	h := &Handler{
		clients: clients,
		pub:     pub,
		health:  health,
		log:     log,
		now:     time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_collector_requests_total",
			Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_collector_events_accepted_total",
			Help: "Events acknowledged by Kafka and answered with 2xx.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_collector_events_dropped_total",
			Help: "Events not sent to Kafka, by reason (opt_out, dnt, gpc, invalid, unknown_client, unavailable).",
		}, []string{"reason"}),
	}
	reg.MustRegister(h.requests, h.accepted, h.dropped)
	return h
}

// Serve routes a request. It is the fasthttp server's handler.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	endpoint := "other"
	switch string(ctx.Path()) {
	case "/api/event":
		endpoint = "event"
		h.serveEvent(ctx)
	case "/healthz":
		endpoint = "healthz"
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case "/readyz":
		endpoint = "readyz"
		status, body := h.health.ReadyResponse(ctx)
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "no such endpoint: "+string(ctx.Path()))
	}
	h.requests.WithLabelValues(endpoint, strconv.Itoa(ctx.Response.StatusCode())).Inc()
}

// ServeError answers requests fasthttp could not read, as the server's
// ErrorHandler: without it an oversized body would get a bare 400.
func (h *Handler) ServeError(ctx *fasthttp.RequestCtx, err error) {
	var status int
	var msg string
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = fasthttp.StatusRequestEntityTooLarge, "request body is larger than the collector accepts"
	case isTimeout(err):
		status, msg = fasthttp.StatusRequestTimeout, "request was not received in time"
	default:
		status, msg = fasthttp.StatusBadRequest, "malformed HTTP request"
	}
	writeError(ctx, status, msg)
	h.requests.WithLabelValues("unreadable", strconv.Itoa(status)).Inc()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (h *Handler) serveEvent(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
		return
	}
	if !acceptableContentType(ctx.Request.Header.ContentType()) {
		writeError(ctx, fasthttp.StatusUnsupportedMediaType, "Content-Type must be application/json (or text/plain, as navigator.sendBeacon sends)")
		return
	}
	// The opt-out cookie wins over everything, even over a malformed body:
	// the visitor said no, so nothing of theirs is looked at further.
	if len(ctx.Request.Header.Cookie(OptOutCookie)) > 0 {
		h.drop(ctx, "opt_out")
		return
	}
	received := h.now()
	ev, err := decodeEvent(ctx.PostBody())
	if err != nil {
		h.reject(ctx, fasthttp.StatusBadRequest, "invalid", err)
		return
	}
	client, err := h.lookupClient(ev)
	if err != nil {
		h.reject(ctx, fasthttp.StatusBadRequest, "unknown_client", err)
		return
	}
	hit, err := ev.toRawHit(received)
	if err != nil {
		h.reject(ctx, fasthttp.StatusBadRequest, "invalid", err)
		return
	}
	if client.RespectDNT {
		if ev.DNT || string(ctx.Request.Header.Peek("DNT")) == "1" {
			h.drop(ctx, "dnt")
			return
		}
		if ev.GPC || string(ctx.Request.Header.Peek("Sec-GPC")) == "1" {
			h.drop(ctx, "gpc")
			return
		}
	}
	h.fillFromRequest(ctx, hit, client, received)

	value, err := proto.Marshal(hit)
	if err != nil {
		h.log.Error("encoding raw hit", zap.Error(err))
		writeError(ctx, fasthttp.StatusInternalServerError, "internal error encoding the event")
		return
	}
	msg := kafka.Message{Key: partitionKey(hit), Value: value}
	// Not ctx: a fasthttp RequestCtx is cancelled when the server starts
	// shutting down, and in-flight events must still get their answer then.
	if err := h.pub.Publish(context.Background(), msg); err != nil {
		h.dropped.WithLabelValues("unavailable").Inc()
		h.log.Warn("event not acknowledged by kafka", zap.String("client_id", hit.ClientId), zap.Error(err))
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "the event could not be stored right now; retry with the same event_id")
		return
	}
	h.accepted.Inc()
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	body, _ := json.Marshal(struct { // two strings always marshal.
		Status  string `json:"status"`
		EventID string `json:"event_id"`
	}{"accepted", hit.EventId})
	ctx.SetBody(body)
}

func (h *Handler) lookupClient(ev *eventJSON) (*registry.Client, error) {
	switch {
	case ev.ClientID != "" && ev.WriteKey != "":
		return nil, invalid("send either client_id or write_key, not both")
	case ev.ClientID != "":
		c, err := h.clients.ByID(ev.ClientID)
		if err != nil {
			return nil, invalid("unknown client_id %q", truncate(ev.ClientID))
		}
		return c, nil
	case ev.WriteKey != "":
		c, err := h.clients.ByWriteKey(ev.WriteKey)
		if err != nil {
			return nil, invalid("unknown write_key")
		}
		return c, nil
	}
	return nil, invalid("client_id (or write_key) is required")
}

// fillFromRequest adds what the collector itself knows about the hit.
func (h *Handler) fillFromRequest(ctx *fasthttp.RequestCtx, hit *aluminiv1.RawHit, client *registry.Client, received time.Time) {
	hit.ClientId = client.ID
	hit.ReceivedAtMs = received.UnixMilli()
	if hit.EventId == "" {
		// UUIDv7: time-ordered, so ids made by different collectors never
		// collide and sort roughly by arrival.
		hit.EventId = uuid.Must(uuid.NewV7()).String()
	}
	hit.UserAgent = string(ctx.Request.Header.UserAgent())
	hit.Ip = ipBytes(ctx.RemoteIP())
	if hit.Language == "" {
		hit.Language = string(ctx.Request.Header.Peek("Accept-Language"))
		if len(hit.Language) > maxShortFieldLen {
			hit.Language = hit.Language[:maxShortFieldLen]
		}
	}
	hit.Consent.DoNotTrack = hit.Consent.DoNotTrack || string(ctx.Request.Header.Peek("DNT")) == "1"
	hit.Consent.GlobalPrivacyControl = hit.Consent.GlobalPrivacyControl || string(ctx.Request.Header.Peek("Sec-GPC")) == "1"
}

// partitionKey keeps one visitor of one client on one partition, so the
// enricher sees a visitor's hits in order. The IP and user agent are hashed:
// the key is not a place for them.
func partitionKey(hit *aluminiv1.RawHit) []byte {
	f := fnv.New64a()
	if hit.CookieId != "" {
		f.Write([]byte(hit.CookieId))
	} else {
		f.Write(hit.Ip)
		f.Write([]byte{0})
		f.Write([]byte(hit.UserAgent))
	}
	return []byte(hit.ClientId + ":" + hex.EncodeToString(f.Sum(nil)))
}

func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// drop answers a hit that must not be collected: 204 with no body, which
// trackers take as success and do not retry.
func (h *Handler) drop(ctx *fasthttp.RequestCtx, reason string) {
	h.dropped.WithLabelValues(reason).Inc()
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (h *Handler) reject(ctx *fasthttp.RequestCtx, status int, reason string, err error) {
	h.dropped.WithLabelValues(reason).Inc()
	writeError(ctx, status, err.Error())
}

func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	body, _ := json.Marshal(struct { // a string always marshals.
		Error string `json:"error"`
	}{msg})
	ctx.SetBody(body)
}

func acceptableContentType(ct []byte) bool {
	mt, _, _ := strings.Cut(string(ct), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || mt == "text/plain"
}
