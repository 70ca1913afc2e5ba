package intake

import (
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// acceptableContentType reports whether a native endpoint takes a body
// labelled ct: JSON, or text (what navigator.sendBeacon sends).
func acceptableContentType(ct []byte) bool {
	mt, _, _ := strings.Cut(string(ct), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || mt == "text/plain" || mt == "application/x-ndjson"
}

var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody returns the request body, decompressed when it is gzip or deflate, and
// a heldBody to release once the body is no longer used. It accounts the
// bytes in flight and refuses with 503 once the bound is reached (see
// readRaw). A gzip or deflate body reserves the whole decompressed limit
// twice up front (inflated, and decoded): its size is unknown until it has
// been read, and the bound must hold before that.
func (h *Handler) readBody(ctx *fasthttp.RequestCtx) ([]byte, heldBody, error) {
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	var reserve int64
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip", "deflate":
		reserve += int64(h.cfg.MaxBodyBytes)
	default:
		return nil, heldBody{}, refuse(fasthttp.StatusUnsupportedMediaType, "invalid", "Content-Encoding %q is not supported; send gzip, deflate or none", truncate(enc))
	}
	raw, held, rerr := h.readRaw(ctx, reserve)
	if rerr != nil {
		return nil, heldBody{}, rerr
	}
	if enc == "" || enc == "identity" {
		return raw, held, nil
	}
	zr, done, err := decompressor(enc, raw)
	if err != nil {
		held.release()
		return nil, heldBody{}, refuse(fasthttp.StatusBadRequest, "invalid", "malformed %s body: %v", enc, err)
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	held.buf = buf
	// Read at most one byte past the limit: enough to know it was passed,
	// so a gzip bomb costs MaxBodyBytes of memory and no more.
	_, err = io.Copy(buf, io.LimitReader(zr, int64(h.cfg.MaxBodyBytes)+1))
	done()
	switch {
	case err != nil:
		held.release()
		return nil, heldBody{}, refuse(fasthttp.StatusBadRequest, "invalid", "malformed %s body: %v", enc, err)
	case buf.Len() > h.cfg.MaxBodyBytes:
		held.release()
		return nil, heldBody{}, refuse(fasthttp.StatusRequestEntityTooLarge, "too_large", "decompressed request body is larger than %d bytes", h.cfg.MaxBodyBytes)
	}
	return buf.Bytes(), held, nil
}

// heldBody is a request body's share of -max-inflight-bytes and its
// pooled buffers: the body as read (raw) and, for a decompressed body, as
// inflated (buf). A value, not a closure: releasing costs no allocation.
type heldBody struct {
	h        *Handler
	reserved int64
	raw, buf *bytes.Buffer
}

func (b heldBody) release() {
	for _, buf := range []*bytes.Buffer{b.raw, b.buf} {
		if buf != nil && buf.Cap() <= 4*b.h.cfg.MaxBodyBytes {
			bodyBuffers.Put(buf)
		}
	}
	b.h.inflight.Add(-b.reserved)
}
