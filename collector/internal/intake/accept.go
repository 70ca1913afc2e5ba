package intake

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

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
	// epSegOther is Segment's group and alias calls: answered, not stored.
	epSegOther
	// epPlausible is a Plausible event posted to the event path (see
	// isPlausible); epUmami is Umami's /api/send.
	epPlausible
	epUmami
)

func (e endpoint) segment() bool { return e >= epSegTrack && e <= epSegOther }

func (e endpoint) label() string {
	return [...]string{"event", "batch", "pixel", "segment_track", "segment_page", "segment_screen", "segment_identify", "segment_batch",
		"segment_other", "plausible", "umami"}[e]
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
	// props are the custom properties of a native event, encoded from here
	// rather than from hit.Properties (see jsonProperties).
	props []prop
	// produce is set on the hits that go to Kafka.
	produce bool
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
	// client is the id of the client the request was for, when known:
	// the refusal's log line names it.
	client string
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
		h.dropCount(r.reason).Add(float64(max(1, r.events)))
		h.logRefusal(ctx, ep.label(), r)
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
	// Held, before any decoding, while Kafka is behind: see
	// publish.Publisher.Admit.
	if err := h.cfg.Publisher.Admit(); err != nil {
		return h.unavailable(err, 1)
	}

	var items []*pending
	// dec holds what the hits are made of, handed back once they are
	// encoded: see decoded.
	var dec decoded
	defer dec.release() // after a refusal; accept hands them back sooner
	if ep == epPixel {
		p, err := h.decodePixel(ctx, received)
		if err != nil {
			return err
		}
		items = []*pending{p}
	} else {
		// Segment SDKs label their JSON as they please (RudderStack's Node
		// SDK: application/x-www-form-urlencoded), and Segment's API reads
		// it whatever the label; a body that is not JSON is a 400 there.
		if !ep.segment() && !acceptableContentType(ctx.Request.Header.ContentType()) {
			return refuse(fasthttp.StatusUnsupportedMediaType, "invalid", "Content-Type must be application/json (or text/plain, as navigator.sendBeacon sends)")
		}
		body, held, err := h.readBody(ctx)
		if err != nil {
			return err
		}
		defer held.release()
		body = cleanJSONText(body)
		decoding, err := h.reserveDecoding(ep, len(body))
		if err != nil {
			return err
		}
		defer decoding.release()
		switch {
		case ep.segment():
			items, err = h.decodeSegment(ctx, ep, body, received)
		case ep == epUmami:
			items, err = h.decodeUmami(body, received)
		default:
			// Room for the body's strings and one collector-made event id.
			dec.a = newArena(len(body) + 64)
			items, dec.slots, err = h.decodeNative(ep, body, received, dec.a)
			// Only a body the native decoder refused may be Plausible's
			// (see isPlausible): the native path pays nothing for it.
			if err != nil && ep == epEvent && isPlausible(body) {
				ep = epPlausible
				items, err = h.decodePlausible(body, received)
			}
		}
		if err != nil {
			return err
		}
	}
	if dec.a == nil {
		dec.a = newArena(256)
	}
	return h.accept(ctx, ep, ip, received, items, &dec)
}

// decoded is what a request's hits are made of: the arena holding their
// strings (see arena) and, for native events, the pooled slots holding
// the hits. Both go back to their pools as soon as the hits are encoded
// and the answer is written, not when the request is answered. A request
// spends most of its time waiting for Kafka's acknowledgement, and what
// was held through that wait was the largest part of what each garbage
// collection had to scan: a slot is hundreds of bytes of string headers,
// and the pools kept as many as the most requests ever in that wait at
// once (5.4 MB of slots after a run of 256 connections). On one core a
// longer mark phase is a longer spell of requests slowed by write
// barriers.
type decoded struct {
	a     *arena
	slots *hitSlots
}

// release hands both back, once; nothing of the hits may be used after.
func (d *decoded) release() {
	if d.a != nil {
		d.a.release()
		d.a = nil
	}
	putSlots(d.slots)
	d.slots = nil
}

// decodeNative reads /api/event and /api/batch bodies. A batch is all or
// nothing: one bad event refuses the whole request with its index, so a
// sender never has to work out which half was stored.
//
// The hits live in slots taken from a pool; the caller hands them back
// with putSlots once they are encoded and nothing refers to them.
func (h *Handler) decodeNative(ep endpoint, body []byte, received time.Time, a *arena) ([]*pending, *hitSlots, error) {
	d := nativeHits{h: h, batch: ep == epBatch, received: received}
	var err error
	if ep == epEvent {
		err = decodeEvent(body, a, &d)
	} else {
		err = decodeBatch(body, h.cfg.MaxBatchEvents, a, &d)
	}
	if err != nil {
		putSlots(d.b)
		return nil, nil, err
	}
	if d.b == nil {
		return nil, nil, nil
	}
	return d.b.items, d.b, nil
}

// hitSlots are the slots of a request's hits and the list of them, pooled
// together: a batch's slots are a few hundred bytes per event, the largest
// allocation of the batch path, and every request needs them only until
// its hits are encoded. Pooling the pair by pointer also spares an
// allocation per request for the pool's own box (a pooled []slot was one).
type hitSlots struct {
	slots []slot
	items []*pending // pointers into slots
}

// slotPools hold zeroed hitSlots by the capacity of their slots.
var slotPools = make(sizePools[hitSlots], 11)

func getSlots(n int) *hitSlots {
	b, c := slotPools.get(n)
	if b == nil {
		return &hitSlots{slots: make([]slot, n, c), items: make([]*pending, 0, c)}
	}
	b.slots = b.slots[:n]
	return b
}

// putSlots zeroes the slots, so that the pool keeps no request's strings
// alive, and pools them.
func putSlots(b *hitSlots) {
	if b == nil {
		return
	}
	clear(b.slots)
	b.slots, b.items = b.slots[:0], b.items[:0]
	slotPools.put(b, cap(b.slots))
}

// nativeHits turns native events into pending hits as they are parsed.
type nativeHits struct {
	h        *Handler
	batch    bool
	received time.Time
	b        *hitSlots
}

// prefix names event i in an error about a batch.
func (d *nativeHits) prefix(i int) string {
	if !d.batch {
		return ""
	}
	return "event " + strconv.Itoa(i) + ": "
}

func (d *nativeHits) start(n int) {
	d.b = getSlots(n)
}

func (d *nativeHits) add(i int, ev *eventJSON) error {
	client, err := d.h.lookupClient(ev)
	if err != nil {
		return refuse(fasthttp.StatusBadRequest, "unknown_client", "%s%v", d.prefix(i), err)
	}
	b := d.b
	sl := &b.slots[len(b.items)]
	if err := ev.fillRawHit(&sl.hit, &sl.consent, d.received, false); err != nil {
		r := refuse(fasthttp.StatusBadRequest, "invalid", "%s%v", d.prefix(i), err)
		r.client = client.ID
		return r
	}
	sl.p = pending{client: client, hit: &sl.hit, props: ev.props}
	b.items = append(b.items, &sl.p)
	return nil
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
func (h *Handler) accept(ctx *fasthttp.RequestCtx, ep endpoint, ip netip.Addr, received time.Time, items []*pending, dec *decoded) error {
	if err := h.checkOrigin(ctx, items); err != nil {
		return err
	}
	if err := h.limitClients(items, received); err != nil {
		return err
	}
	var req requestFacts
	req.read(ctx, ip, received, dec.a)
	var vid string
	var newVisitor bool
	dropped := 0
	// Hits to produce are marked (it.produce) and their encoding sized
	// first, so that all keys and values of the request share one buffer.
	size := 0
	for _, it := range items {
		if it.skip != "" {
			h.dropCount(it.skip).Inc()
			dropped++
			continue
		}
		hit := it.hit
		req.fill(it)
		if reason := h.privacyDrop(it); reason != "" {
			h.dropCount(reason).Inc()
			dropped++
			continue
		}
		if it.client.ChildDirected {
			countsOnly(hit)
		} else if it.client.CookieMode == registry.CookieModeCookie {
			switch {
			case it.anonymousID != "":
				hit.CookieId = it.anonymousID
			default:
				if vid == "" {
					vid, newVisitor = h.visitorID(ctx, ep, hit)
				}
				hit.CookieId = vid
			}
		}
		if allowed := it.client.AllowedProperties; len(allowed) > 0 || it.client.ChildDirected {
			it.props = keepAllowed(it.props, hit.Properties, allowed)
		}
		it.produce = true
		size += partitionKeySize(hit) + rawHitSizeHint(hit, it.props)
	}
	// The encoded events wait for Kafka: their bytes count against the
	// in-flight budget too.
	produced, err := h.reserve(int64(size))
	if err != nil {
		return err
	}
	defer produced.release()
	pb := produceBufs.Get().(*produceBuf)
	msgs, buf := pb.msgs[:0], pb.buf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	for _, it := range items {
		if !it.produce {
			continue
		}
		// Sub-slices with their capacity cut, so that no append reaches
		// into a neighbour; should a size hint fall short, append moves on
		// to a new array and what was cut before stays valid.
		k := len(buf)
		buf = appendPartitionKey(buf, it.hit)
		v := len(buf)
		buf = appendRawHitProps(buf, it.hit, it.props)
		msgs = append(msgs, kafka.Message{Key: buf[k:v:v], Value: buf[v:len(buf):len(buf)]})
	}
	if len(msgs) == 0 {
		// Every hit was dropped: counted above, answered as success.
		pb.recycle(msgs, buf)
		h.answerDropped(ctx, ep, "", 0)
		return nil
	}
	// The answer is written while the hits are at hand, and what they are
	// made of goes back before the wait for Kafka (see decoded); should
	// Kafka not take the events, the refusal's answer replaces it.
	h.answerAccepted(ctx, ep, items, len(msgs), dropped)
	dec.release()
	// Not ctx: a fasthttp RequestCtx is cancelled when the server starts
	// shutting down, and in-flight events must still get their answer then.
	if err := h.cfg.Publisher.Publish(context.Background(), msgs...); err != nil {
		// pb is not recycled: a producer that gave up waiting may still
		// be sending from buf.
		return h.unavailable(err, len(msgs))
	}
	pb.recycle(msgs, buf)
	if newVisitor {
		h.setVisitorCookie(ctx, vid)
	}
	h.accepted.Add(float64(len(msgs)))
	h.batchSize.Observe(float64(len(msgs)))
	return nil
}

// unavailable is the answer when Kafka did not take a request's events in
// time: 503, so that the sender retries them with the same ids.
func (h *Handler) unavailable(err error, events int) *refusal {
	h.cfg.Log.Warn("events not acknowledged by kafka", zap.Int("events", events), zap.Error(err))
	r := refuse(fasthttp.StatusServiceUnavailable, "unavailable", "the events could not be stored right now; retry with the same event_id")
	r.retryAfter, r.events = time.Second, events
	return r
}

// produceBuf is a request's Kafka messages and the buffer their keys and
// values are encoded into, recycled once Kafka acknowledged them: a
// Publisher is done with the bytes when Publish returned nil (the produce
// request holding them was answered, and its partition's lane dropped
// them before waking the caller), and not before. Recycling spares the garbage collector about a
// third of the bytes a batch request allocates.
type produceBuf struct {
	msgs []kafka.Message
	buf  []byte
}

var produceBufs = sync.Pool{New: func() any { return new(produceBuf) }}

// recycle puts the buffers back for another request; oversized ones (a
// rare huge batch) are left to the garbage collector.
func (pb *produceBuf) recycle(msgs []kafka.Message, buf []byte) {
	if cap(buf) > 4<<20 || cap(msgs) > 4096 {
		return
	}
	pb.msgs, pb.buf = msgs[:0], buf[:0]
	produceBufs.Put(pb)
}

// keepAllowed leaves only the property names on the client's allow-list,
// in both forms a hit carries them: clients decide which data they send,
// and what they did not allow never reaches Kafka.
func keepAllowed(props []prop, m map[string]string, allowed []string) []prop {
	kept := props[:0]
	for _, p := range props {
		if slices.Contains(allowed, p.key) {
			kept = append(kept, p)
		}
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			delete(m, k)
		}
	}
	return kept
}

// countsOnly strips a child-directed client's hit of what identifies a
// person before it reaches Kafka: no cookie id (none is read or set for
// it), no user id, and the IP cut to its /24 (IPv4) or /48 (IPv6)
// network, which still names the country. Its custom properties go unless
// allow-listed (see accept).
func countsOnly(hit *aluminiv1.RawHit) {
	hit.CookieId, hit.UserId = "", ""
	keep := 0
	switch len(hit.Ip) {
	case 4:
		keep = 3
	case 16:
		keep = 6
	}
	// A new slice: the request's address is shared by all its hits.
	network := make([]byte, len(hit.Ip))
	copy(network, hit.Ip[:keep])
	hit.Ip = network
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
	m := h.excluded.For(it.client)
	if m == nil {
		return ""
	}
	ip, _ := netip.AddrFromSlice(it.hit.Ip)
	if rule := m.Excluded(ip, it.hit.Url); rule != "" {
		return "excluded_" + rule
	}
	return ""
}

// limitClients takes one token per event from each client's bucket.
func (h *Handler) limitClients(items []*pending, now time.Time) error {
	// Counts per client in a small list, not a map: a request nearly
	// always carries one client's events.
	type clientCount struct {
		c *registry.Client
		n int
	}
	var store [4]clientCount
	counts := store[:0]
next:
	for _, it := range items {
		for i := range counts {
			if counts[i].c == it.client {
				counts[i].n++
				continue next
			}
		}
		counts = append(counts, clientCount{it.client, 1})
	}
	for _, cc := range counts {
		c, n := cc.c, cc.n
		perSecond, burst := h.cfg.ClientRate, h.cfg.ClientBurst
		if c.RateLimitPerSecond > 0 {
			perSecond = c.RateLimitPerSecond
		}
		if c.RateLimitBurst > 0 {
			burst = max(c.RateLimitBurst, h.cfg.MaxBatchEvents)
		}
		// A Segment batch may hold more events than the burst (see
		// segmentBatchMessages): it takes the whole bucket, so it passes
		// once the bucket is full rather than never.
		if ok, wait := h.clientRL.Allow(c.ID, perSecond, burst, min(n, burst), now); !ok {
			r := refuse(fasthttp.StatusTooManyRequests, "rate_limited", "too many events for client %s; retry after %s", c.ID, roundUp(wait))
			r.retryAfter, r.events, r.client = wait, len(items), c.ID
			return r
		}
	}
	return nil
}

func roundUp(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// requestFacts is what the collector itself knows about the hits of one
// request, read from it once rather than once per hit.
type requestFacts struct {
	received  int64
	ip        []byte
	userAgent string
	language  string
	dnt, gpc  bool
	hints     *aluminiv1.ClientHints
	// a holds the request's strings, and the event ids the collector
	// makes.
	a *arena
}

func (r *requestFacts) read(ctx *fasthttp.RequestCtx, ip netip.Addr, received time.Time, a *arena) {
	*r = requestFacts{
		a:         a,
		received:  received.UnixMilli(),
		userAgent: a.header(ctx.Request.Header.UserAgent(), maxURLLen),
		language:  a.header(ctx.Request.Header.Peek("Accept-Language"), maxShortFieldLen),
		dnt:       string(ctx.Request.Header.Peek("DNT")) == "1",
		gpc:       string(ctx.Request.Header.Peek("Sec-GPC")) == "1",
		hints:     clientHints(ctx, a),
	}
	if ip.IsValid() {
		if ip = ip.Unmap(); ip.Is4() {
			b := ip.As4()
			r.ip = a.bytes(b[:])
		} else {
			b := ip.As16()
			r.ip = a.bytes(b[:])
		}
	}
}

// fill adds what the collector knows to a hit. Hits of one request share
// the IP slice and client hints: they are only read from here on.
func (r *requestFacts) fill(it *pending) {
	hit := it.hit
	hit.ClientId = it.client.ID
	hit.ReceivedAtMs = r.received
	if hit.EventId == "" {
		hit.EventId = r.newEventID()
	}
	if it.userAgent != "" {
		hit.UserAgent = it.userAgent
	} else {
		hit.UserAgent = r.userAgent
	}
	if it.ip.IsValid() {
		hit.Ip = it.ip.Unmap().AsSlice()
	} else if r.ip != nil {
		hit.Ip = r.ip
	}
	if hit.Language == "" {
		hit.Language = r.language
	}
	if hit.Consent == nil {
		hit.Consent = &aluminiv1.Consent{}
	}
	hit.Consent.DoNotTrack = hit.Consent.DoNotTrack || r.dnt
	hit.Consent.GlobalPrivacyControl = hit.Consent.GlobalPrivacyControl || r.gpc
	if r.hints != nil {
		hit.ClientHints = r.hints
	}
}

// newEventID makes a UUIDv7 (RFC 9562): the receive time in
// milliseconds, then 74 random bits. Time-ordered, so ids made by
// different collectors never collide and sort roughly by arrival. The
// random bits come from math/rand/v2's generator (ChaCha8, seeded by the
// runtime from the system's entropy) rather than a getrandom system call per
// id: event ids must be unique, not secret.
func (r *requestFacts) newEventID() string {
	hi := uint64(r.received)<<16 | 0x7000 | mrand.Uint64()&0x0fff
	lo := mrand.Uint64()&(1<<62-1) | 1<<63 // variant 10
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], hi)
	binary.BigEndian.PutUint64(u[8:], lo)
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return r.a.str(b[:])
}

func clientHints(ctx *fasthttp.RequestCtx, a *arena) *aluminiv1.ClientHints {
	hd := &ctx.Request.Header
	ua := hd.Peek("Sec-CH-UA")
	if len(ua) == 0 {
		return nil
	}
	return &aluminiv1.ClientHints{
		Ua:                a.header(ua, maxURLLen),
		UaMobile:          a.header(hd.Peek("Sec-CH-UA-Mobile"), maxShortFieldLen),
		UaPlatform:        a.header(hd.Peek("Sec-CH-UA-Platform"), maxShortFieldLen),
		UaPlatformVersion: a.header(hd.Peek("Sec-CH-UA-Platform-Version"), maxShortFieldLen),
		UaModel:           a.header(hd.Peek("Sec-CH-UA-Model"), maxShortFieldLen),
		UaFullVersionList: a.header(hd.Peek("Sec-CH-UA-Full-Version-List"), maxURLLen),
	}
}

// appendPartitionKey appends the key that keeps one visitor of one client
// on one partition, so the enricher sees a visitor's hits in order:
// "<client>:<hex FNV-1a 64 of the cookie id, or of IP, 0, user agent>". The
// IP and user agent are hashed: the key is not a place for them.
func appendPartitionKey(b []byte, hit *aluminiv1.RawHit) []byte {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	if hit.CookieId != "" {
		for i := 0; i < len(hit.CookieId); i++ {
			h = (h ^ uint64(hit.CookieId[i])) * prime
		}
	} else {
		for _, c := range hit.Ip {
			h = (h ^ uint64(c)) * prime
		}
		h *= prime // ^ 0, the separator
		for i := 0; i < len(hit.UserAgent); i++ {
			h = (h ^ uint64(hit.UserAgent[i])) * prime
		}
	}
	b = append(b, hit.ClientId...)
	b = append(b, ':')
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h)
	return hex.AppendEncode(b, sum[:])
}

func partitionKeySize(hit *aluminiv1.RawHit) int { return len(hit.ClientId) + 1 + 16 }

// visitorID is the visitor cookie's id. A browser without one (or with a
// malformed one) gets a new id, to be set as its cookie. Browsers
// send Origin with every POST, and the pixel is an image in a page; a
// request with neither is a server's, which cannot keep a cookie: it gets
// no id rather than a new visitor per event.
func (h *Handler) visitorID(ctx *fasthttp.RequestCtx, ep endpoint, hit *aluminiv1.RawHit) (id string, isNew bool) {
	if v := ctx.Request.Header.Cookie(VisitorCookie); len(v) == 32 {
		if _, err := hex.DecodeString(string(v)); err == nil {
			return string(v), false
		}
	}
	if ep != epPixel && len(ctx.Request.Header.Peek("Origin")) == 0 {
		return "", false
	}
	var b [16]byte
	if len(h.cfg.CookieSecret) > 0 {
		// Derived from the event that makes the visitor: a retry of it
		// without the cookie (the first answer never arrived, though its
		// event reached Kafka) gets the same visitor instead of a second.
		mac := hmac.New(sha256.New, h.cfg.CookieSecret)
		mac.Write([]byte(hit.ClientId))
		mac.Write([]byte{0})
		mac.Write([]byte(hit.EventId))
		copy(b[:], mac.Sum(nil))
	} else {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	}
	return hex.EncodeToString(b[:]), true
}
