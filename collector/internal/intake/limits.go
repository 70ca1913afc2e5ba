package intake

import (
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// unreadableLog is the logger of requests refused before the handler
// (ServeError): zap's sampler keeps the first few entries of each message
// (one per reason) in every second and drops the rest, which the metric
// still counts. A flood of bad requests must not become a flood of log
// lines.
func unreadableLog(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 5, 0)
	}))
}

// conflictingFraming reports whether a request has both Content-Length
// and Transfer-Encoding. fasthttp reads such a request by its
// Transfer-Encoding, as RFC 9112 says, but a proxy in front may have read
// it by its Content-Length: the bytes between are another request to one
// of them (request smuggling). Refused rather than guessed.
func conflictingFraming(h *fasthttp.RequestHeader) bool {
	if h.ContentLength() != -1 {
		// Transfer-Encoding wins when both are sent, so a request with a
		// length has none; and chunked requests are rare.
		return false
	}
	for k := range h.AllInOrder() { // the headers as received
		if bytes.EqualFold(k, []byte("Content-Length")) {
			return true
		}
	}
	return false
}

// reservation is a share of -max-inflight-bytes, given back by release.
type reservation struct {
	h *Handler
	n int64
}

// reserve takes n bytes of the in-flight budget, or refuses with 503 when
// they would pass it.
func (h *Handler) reserve(n int64) (reservation, error) {
	if h.inflight.Add(n) > h.cfg.MaxInflightBytes {
		h.inflight.Add(-n)
		r := refuse(fasthttp.StatusServiceUnavailable, "overloaded", "the collector is busy; retry later with the same event_id")
		r.retryAfter = time.Second
		return reservation{}, r
	}
	return reservation{h: h, n: n}, nil
}

func (r reservation) release() {
	if r.h != nil {
		r.h.inflight.Add(-r.n)
	}
}

// segmentDecodeFactor is how many bytes decoding a Segment body takes per
// byte of it, beyond the one readRaw reserves: encoding/json's maps and
// boxed values of a batch of track calls take five to six bytes per byte,
// more with the workspace's toolchain than with go1.26 (docs/collector.md,
// limits and abuse). The native decoder copies each string once into a
// pooled arena, which readRaw's reservation covers.
const segmentDecodeFactor = 5

// reserveDecoding reserves what decoding a body of n bytes takes beyond
// readRaw's reservation: nothing for native bodies, more for Segment's.
func (h *Handler) reserveDecoding(ep endpoint, n int) (reservation, error) {
	if !ep.segment() {
		return reservation{}, nil
	}
	return h.reserve(segmentDecodeFactor * int64(n))
}

// readRaw reads a request body as sent (still compressed), after admitting
// it against -max-inflight-bytes. The server streams bodies
// (StreamRequestBody), so nothing past the first 8 KiB has been read when
// this is called: a body over the limit or over the budget is refused
// before it costs memory. What a body becomes is reserved twice: as read
// (or inflated, up to the inflated limit of a compressed body) and as
// decoded into the request's hits. A body of unknown length (chunked)
// reserves the body limit.
func (h *Handler) readRaw(ctx *fasthttp.RequestCtx, inflated int64) ([]byte, heldBody, error) {
	limit := h.cfg.MaxBodyBytes
	cl := ctx.Request.Header.ContentLength()
	if cl > limit {
		// The client is still sending what will not be read.
		ctx.SetConnectionClose()
		return nil, heldBody{}, refuse(fasthttp.StatusRequestEntityTooLarge, "too_large", "request body is larger than the collector accepts")
	}
	size := cl
	if cl < 0 {
		size = limit
	}
	res, err := h.reserve(2 * (int64(size) + inflated))
	if err != nil {
		ctx.SetConnectionClose()
		return nil, heldBody{}, err
	}
	held := heldBody{h: h, reserved: res.n}
	stream := ctx.RequestBodyStream()
	if stream == nil {
		// A server that read the whole body already (not NewServer's),
		// within its MaxRequestBodySize.
		return ctx.PostBody(), held, nil
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	held.raw = buf
	if cl >= 0 {
		buf.Grow(cl)
		b := buf.AvailableBuffer()[:cl]
		if _, err := io.ReadFull(stream, b); err != nil {
			held.release()
			return nil, heldBody{}, bodyReadError(err)
		}
		return b, held, nil
	}
	if _, err := buf.ReadFrom(io.LimitReader(stream, int64(limit)+1)); err != nil {
		held.release()
		return nil, heldBody{}, bodyReadError(err)
	}
	if buf.Len() > limit {
		held.release()
		ctx.SetConnectionClose()
		return nil, heldBody{}, refuse(fasthttp.StatusRequestEntityTooLarge, "too_large", "request body is larger than the collector accepts")
	}
	return buf.Bytes(), held, nil
}

// bodyReadError is the answer to a body that could not be read to its end;
// the client will most likely not read it, but the reason is counted.
func bodyReadError(err error) error {
	if isTimeout(err) {
		return refuse(fasthttp.StatusRequestTimeout, "read_timeout", "request body was not received in time")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return refuse(fasthttp.StatusBadRequest, "malformed_request", "request body ended before its Content-Length")
	}
	return refuse(fasthttp.StatusBadRequest, "malformed_request", "malformed request body: %v", err)
}
