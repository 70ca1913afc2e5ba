package intake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// endpoint is the kind of intake request; it decides how the body is read
// and how the sender is answered.
type endpoint int

const (
	epEvent endpoint = iota
	epBatch
	epPixel
	epSegTrack
	epSegPage
	epSegScreen
	epSegIdentify
	epSegBatch
)

func segmentEndpoint(path string) endpoint {
	switch path {
	case "/v1/track":
		return epSegTrack
	case "/v1/page":
		return epSegPage
	case "/v1/screen":
		return epSegScreen
	case "/v1/identify":
		return epSegIdentify
	}
	return epSegBatch
}

func (e endpoint) segment() bool { return e >= epSegTrack }

func (e endpoint) label() string {
	return [...]string{"event", "batch", "pixel", "segment_track", "segment_page", "segment_screen", "segment_identify", "segment_batch"}[e]
}

// pending is one decoded and validated hit on its way to Kafka.
type pending struct {
	client *registry.Client
	hit    *aluminiv1.RawHit
	// skip is a drop reason found while decoding (a Segment call type
	// Alumini does not store); the hit is counted and left out.
	skip string
	// ip and userAgent, when set, come from the payload of an authenticated
	// server-side send and replace the request's own.
	ip        netip.Addr
	userAgent string
	// anonymousID is a Segment SDK's visitor id, used as the cookie id of
	// clients in cookie mode.
	anonymousID string
}

// refusal is a request the collector will not take, with the status and
// metric reason to answer it with.
type refusal struct {
	status     int
	reason     string
	msg        string
	retryAfter time.Duration
	// events is how many events the refusal drops, when known (1 if not).
	events int
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, reason, format string, args ...any) *refusal {
	return &refusal{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// serveIntake handles every endpoint that takes events. The checks run
// cheapest first, and the opt-out cookie before anything of the visitor's
// is looked at.
func (h *Handler) serveIntake(ctx *fasthttp.RequestCtx, ep endpoint) {
	if ctx.IsOptions() {
		h.preflight(ctx, ep)
		return
	}
	if err := h.intake(ctx, ep); err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = refuse(fasthttp.StatusBadRequest, "invalid", "%s", err.Error())
		}
		if r.retryAfter > 0 {
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(r.retryAfter.Seconds()))))
		}
		if r.status == fasthttp.StatusUnauthorized {
			ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="alumini", charset="UTF-8"`)
		}
		h.dropped.WithLabelValues(r.reason).Add(float64(max(1, r.events)))
		writeError(ctx, r.status, r.msg)
	}
}

func (h *Handler) intake(ctx *fasthttp.RequestCtx, ep endpoint) error {
	if ep == epPixel {
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			return refuse(fasthttp.StatusMethodNotAllowed, "invalid", "use GET")
		}
	} else if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST, OPTIONS")
		return refuse(fasthttp.StatusMethodNotAllowed, "invalid", "use POST")
	}
	// The opt-out cookie wins over everything, even over a malformed body:
	// the visitor said no, so nothing of theirs is looked at further.
	if len(ctx.Request.Header.Cookie(OptOutCookie)) > 0 {
		h.answerDropped(ctx, ep, "opt_out", 1)
		return nil
	}
	received := h.now()
	ip := h.clientIP(ctx)
	if h.cfg.IPRate <= 0 {
		// No per-address limit: skip formatting the address as a key.
	} else if ok, wait := h.ipRL.Allow(ip.String(), h.cfg.IPRate, h.cfg.IPBurst, 1, received); !ok {
		r := refuse(fasthttp.StatusTooManyRequests, "rate_limited", "too many requests from this address; retry after %s", roundUp(wait))
		r.retryAfter = wait
		return r
	}

	var items []*pending
	if ep == epPixel {
		p, err := h.decodePixel(ctx, received)
		if err != nil {
			return err
		}
		items = []*pending{p}
	} else {
		if !acceptableContentType(ctx.Request.Header.ContentType()) {
			return refuse(fasthttp.StatusUnsupportedMediaType, "invalid", "Content-Type must be application/json (or text/plain, as navigator.sendBeacon sends)")
		}
		body, release, err := h.readBody(ctx)
		if err != nil {
			return err
		}
		defer release()
		if ep.segment() {
			items, err = h.decodeSegment(ctx, ep, body, received)
		} else {
			items, err = h.decodeNative(ep, body, received)
		}
		if err != nil {
			return err
		}
	}
	return h.accept(ctx, ep, ip, received, items)
}

// decodeNative reads /api/event and /api/batch bodies. A batch is all or
// nothing: one bad event refuses the whole request with its index, so a
// sender never has to work out which half was stored.
func (h *Handler) decodeNative(ep endpoint, body []byte, received time.Time) ([]*pending, error) {
	var evs []*eventJSON
	if ep == epEvent {
		ev, err := decodeEvent(body)
		if err != nil {
			return nil, err
		}
		evs = []*eventJSON{ev}
	} else {
		var err error
		if evs, err = decodeBatch(body, h.cfg.MaxBatchEvents); err != nil {
			return nil, err
		}
	}
	// One allocation each for the batch's items, hits and consents.
	items := make([]*pending, len(evs))
	store := make([]pending, len(evs))
	hits := make([]aluminiv1.RawHit, len(evs))
	consents := make([]aluminiv1.Consent, len(evs))
	for i, ev := range evs {
		prefix := ""
		if ep == epBatch {
			prefix = "event " + strconv.Itoa(i) + ": "
		}
		client, err := h.lookupClient(ev)
		if err != nil {
			return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "%s%v", prefix, err)
		}
		if err := ev.fillRawHit(&hits[i], &consents[i], received, false); err != nil {
			return nil, refuse(fasthttp.StatusBadRequest, "invalid", "%s%v", prefix, err)
		}
		store[i] = pending{client: client, hit: &hits[i]}
		items[i] = &store[i]
	}
	return items, nil
}

func (h *Handler) lookupClient(ev *eventJSON) (*registry.Client, error) {
	switch {
	case ev.ClientID != "" && ev.WriteKey != "":
		return nil, invalid("send either client_id or write_key, not both")
	case ev.ClientID != "":
		c, err := h.cfg.Clients.ByID(ev.ClientID)
		if err != nil {
			return nil, invalid("unknown client_id %q", truncate(ev.ClientID))
		}
		return c, nil
	case ev.WriteKey != "":
		c, err := h.cfg.Clients.ByWriteKey(ev.WriteKey)
		if err != nil {
			return nil, invalid("unknown write_key")
		}
		return c, nil
	}
	return nil, invalid("client_id (or write_key) is required")
}

// accept applies the per-client rules to decoded hits and produces the
// ones left in a single Kafka write, answering 2xx only once it is acked.
func (h *Handler) accept(ctx *fasthttp.RequestCtx, ep endpoint, ip netip.Addr, received time.Time, items []*pending) error {
	if err := h.checkOrigin(ctx, items); err != nil {
		return err
	}
	if err := h.limitClients(items, received); err != nil {
		return err
	}
	msgs := make([]kafka.Message, 0, len(items))
	ids := make([]string, len(items))
	var vid string
	var newVisitor bool
	dropped := 0
	for i, it := range items {
		if it.skip != "" {
			h.dropped.WithLabelValues(it.skip).Inc()
			dropped++
			continue
		}
		hit := it.hit
		h.fillFromRequest(ctx, it, ip, received)
		ids[i] = hit.EventId
		if reason := h.privacyDrop(it); reason != "" {
			h.dropped.WithLabelValues(reason).Inc()
			dropped++
			continue
		}
		if it.client.CookieMode == registry.CookieModeCookie {
			switch {
			case it.anonymousID != "":
				hit.CookieId = it.anonymousID
			default:
				if vid == "" {
					vid, newVisitor = h.visitorID(ctx, ep)
				}
				hit.CookieId = vid
			}
		}
		msgs = append(msgs, kafka.Message{Key: partitionKey(hit), Value: appendRawHit(make([]byte, 0, rawHitSizeHint(hit)), hit)})
	}
	if len(msgs) == 0 {
		// Every hit was dropped: counted above, answered as success.
		h.answerDropped(ctx, ep, "", 0)
		return nil
	}
	// Not ctx: a fasthttp RequestCtx is cancelled when the server starts
	// shutting down, and in-flight events must still get their answer then.
	if err := h.cfg.Publisher.Publish(context.Background(), msgs...); err != nil {
		h.cfg.Log.Warn("events not acknowledged by kafka", zap.Int("events", len(msgs)), zap.Error(err))
		r := refuse(fasthttp.StatusServiceUnavailable, "unavailable", "the events could not be stored right now; retry with the same event_id")
		r.retryAfter, r.events = time.Second, len(msgs)
		return r
	}
	if newVisitor {
		h.setVisitorCookie(ctx, vid)
	}
	h.accepted.Add(float64(len(msgs)))
	h.batchSize.Observe(float64(len(msgs)))
	h.answerAccepted(ctx, ep, ids, len(msgs), dropped)
	return nil
}

// privacyDrop says why a hit must not be collected, or "".
func (h *Handler) privacyDrop(it *pending) string {
	c := it.hit.Consent
	if it.client.RespectDNT {
		if c.DoNotTrack {
			return "dnt"
		}
		if c.GlobalPrivacyControl {
			return "gpc"
		}
	}
	rules := h.cfg.Rules.For(it.client.ID)
	if rules == nil {
		return ""
	}
	host, path := "", ""
	if it.hit.Url != "" {
		if u, err := url.Parse(it.hit.Url); err == nil {
			host, path = u.Hostname(), u.Path
			if path == "" {
				path = "/"
			}
		}
	}
	ip, _ := netip.AddrFromSlice(it.hit.Ip)
	if rule := rules.Excluded(ip, host, path); rule != "" {
		return "excluded_" + rule
	}
	return ""
}

// limitClients takes one token per event from each client's bucket.
func (h *Handler) limitClients(items []*pending, now time.Time) error {
	counts := make(map[*registry.Client]int, 1)
	for _, it := range items {
		counts[it.client]++
	}
	for c, n := range counts {
		perSecond, burst := h.cfg.ClientRate, h.cfg.ClientBurst
		if r := h.cfg.Rules.For(c.ID); r != nil {
			if r.RateLimitPerSecond > 0 {
				perSecond = r.RateLimitPerSecond
			}
			if r.RateLimitBurst > 0 {
				burst = max(r.RateLimitBurst, h.cfg.MaxBatchEvents)
			}
		}
		if ok, wait := h.clientRL.Allow(c.ID, perSecond, burst, n, now); !ok {
			r := refuse(fasthttp.StatusTooManyRequests, "rate_limited", "too many events for client %s; retry after %s", c.ID, roundUp(wait))
			r.retryAfter, r.events = wait, len(items)
			return r
		}
	}
	return nil
}

func roundUp(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// fillFromRequest adds what the collector itself knows about the hit.
func (h *Handler) fillFromRequest(ctx *fasthttp.RequestCtx, it *pending, ip netip.Addr, received time.Time) {
	hit := it.hit
	hit.ClientId = it.client.ID
	hit.ReceivedAtMs = received.UnixMilli()
	if hit.EventId == "" {
		// UUIDv7: time-ordered, so ids made by different collectors never
		// collide and sort roughly by arrival.
		hit.EventId = uuid.Must(uuid.NewV7()).String()
	}
	if it.userAgent != "" {
		hit.UserAgent = it.userAgent
	} else {
		hit.UserAgent = headerString(ctx.Request.Header.UserAgent(), maxURLLen)
	}
	if it.ip.IsValid() {
		ip = it.ip
	}
	if ip.IsValid() {
		hit.Ip = ip.Unmap().AsSlice()
	}
	if hit.Language == "" {
		hit.Language = headerString(ctx.Request.Header.Peek("Accept-Language"), maxShortFieldLen)
	}
	if hit.Consent == nil {
		hit.Consent = &aluminiv1.Consent{}
	}
	hit.Consent.DoNotTrack = hit.Consent.DoNotTrack || string(ctx.Request.Header.Peek("DNT")) == "1"
	hit.Consent.GlobalPrivacyControl = hit.Consent.GlobalPrivacyControl || string(ctx.Request.Header.Peek("Sec-GPC")) == "1"
	if ch := clientHints(ctx); ch != nil {
		hit.ClientHints = ch
	}
}

func clientHints(ctx *fasthttp.RequestCtx) *aluminiv1.ClientHints {
	hd := &ctx.Request.Header
	ua := hd.Peek("Sec-CH-UA")
	if len(ua) == 0 {
		return nil
	}
	return &aluminiv1.ClientHints{
		Ua:                headerString(ua, maxURLLen),
		UaMobile:          headerString(hd.Peek("Sec-CH-UA-Mobile"), maxShortFieldLen),
		UaPlatform:        headerString(hd.Peek("Sec-CH-UA-Platform"), maxShortFieldLen),
		UaPlatformVersion: headerString(hd.Peek("Sec-CH-UA-Platform-Version"), maxShortFieldLen),
		UaModel:           headerString(hd.Peek("Sec-CH-UA-Model"), maxShortFieldLen),
		UaFullVersionList: headerString(hd.Peek("Sec-CH-UA-Full-Version-List"), maxURLLen),
	}
}

// headerString copies a header value into a raw-hit field: cut to max
// bytes and made valid UTF-8, which protobuf strings must be (a consumer's
// decoder refuses anything else). Headers are the visitor's to send, so
// they are repaired rather than refused.
func headerString(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
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

// answerDropped answers a request none of whose hits is collected, the way
// each kind of sender takes as success without retrying.
func (h *Handler) answerDropped(ctx *fasthttp.RequestCtx, ep endpoint, reason string, n int) {
	if reason != "" {
		h.dropped.WithLabelValues(reason).Add(float64(n))
	}
	switch {
	case ep == epPixel:
		writePixel(ctx)
	case ep.segment():
		writeSegmentSuccess(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	}
}

func (h *Handler) answerAccepted(ctx *fasthttp.RequestCtx, ep endpoint, ids []string, accepted, dropped int) {
	switch {
	case ep == epPixel:
		writePixel(ctx)
		return
	case ep.segment():
		writeSegmentSuccess(ctx)
		return
	}
	var body []byte
	if ep == epEvent {
		body, _ = json.Marshal(struct { // strings always marshal.
			Status  string `json:"status"`
			EventID string `json:"event_id"`
		}{"accepted", ids[0]})
	} else {
		body, _ = json.Marshal(struct { // strings and ints always marshal.
			Status   string   `json:"status"`
			Accepted int      `json:"accepted"`
			Dropped  int      `json:"dropped"`
			EventIDs []string `json:"event_ids"`
		}{"accepted", accepted, dropped, ids})
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func acceptableContentType(ct []byte) bool {
	mt, _, _ := strings.Cut(string(ct), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || mt == "text/plain" || mt == "application/x-ndjson"
}

var (
	gzipReaders sync.Pool // *gzip.Reader
	bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// readBody returns the request body, decompressed when it is gzipped, and
// a release func to call once the body is no longer used. It accounts the
// bytes in flight and refuses with 503 once the bound is reached. A gzip
// body reserves the whole decompressed limit up front: its size is unknown
// until it has been read, and the bound must hold before that.
func (h *Handler) readBody(ctx *fasthttp.RequestCtx) ([]byte, func(), error) {
	raw := ctx.PostBody()
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	reserve := int64(len(raw))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		reserve += int64(h.cfg.MaxBodyBytes)
	default:
		return nil, nil, refuse(fasthttp.StatusUnsupportedMediaType, "invalid", "Content-Encoding %q is not supported; send gzip or none", truncate(enc))
	}
	if h.inflight.Add(reserve) > h.cfg.MaxInflightBytes {
		h.inflight.Add(-reserve)
		r := refuse(fasthttp.StatusServiceUnavailable, "overloaded", "the collector is busy; retry later with the same event_id")
		r.retryAfter = time.Second
		return nil, nil, r
	}
	release := func() { h.inflight.Add(-reserve) }
	if enc == "" || enc == "identity" {
		return raw, release, nil
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(raw))
	} else {
		err = zr.Reset(bytes.NewReader(raw))
	}
	if err != nil {
		release()
		return nil, nil, refuse(fasthttp.StatusBadRequest, "invalid", "malformed gzip body: %v", err)
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	// Read at most one byte past the limit: enough to know it was passed,
	// so a gzip bomb costs MaxBodyBytes of memory and no more.
	_, err = io.Copy(buf, io.LimitReader(zr, int64(h.cfg.MaxBodyBytes)+1))
	gzipReaders.Put(zr)
	done := func() {
		if buf.Cap() <= 4*h.cfg.MaxBodyBytes {
			bodyBuffers.Put(buf)
		}
		release()
	}
	switch {
	case err != nil:
		done()
		return nil, nil, refuse(fasthttp.StatusBadRequest, "invalid", "malformed gzip body: %v", err)
	case buf.Len() > h.cfg.MaxBodyBytes:
		done()
		return nil, nil, refuse(fasthttp.StatusRequestEntityTooLarge, "too_large", "decompressed request body is larger than %d bytes", h.cfg.MaxBodyBytes)
	}
	return buf.Bytes(), done, nil
}

// visitorID is the visitor cookie's id. A browser without one (or with a
// malformed one) gets a new random id, to be set as its cookie. Browsers
// send Origin with every POST, and the pixel is an image in a page; a
// request with neither is a server's, which cannot keep a cookie: it gets
// no id rather than a new visitor per event.
func (h *Handler) visitorID(ctx *fasthttp.RequestCtx, ep endpoint) (id string, isNew bool) {
	if v := ctx.Request.Header.Cookie(VisitorCookie); len(v) == 32 {
		if _, err := hex.DecodeString(string(v)); err == nil {
			return string(v), false
		}
	}
	if ep != epPixel && len(ctx.Request.Header.Peek("Origin")) == 0 {
		return "", false
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b[:]), true
}
