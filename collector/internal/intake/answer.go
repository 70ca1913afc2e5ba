package intake

import (
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// answerDropped answers a request none of whose hits is collected, the way
// each kind of sender takes as success without retrying.
func (h *Handler) answerDropped(ctx *fasthttp.RequestCtx, ep endpoint, reason string, n int) {
	if reason != "" {
		h.dropCount(reason).Add(float64(n))
	}
	switch {
	case ep == epPixel:
		writePixel(ctx)
	case ep.segment():
		writeSegmentSuccess(ctx)
	case ep == epPlausible:
		writePlausibleOK(ctx, true)
	case ep == epUmami:
		writeUmamiOK(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	}
}

func (h *Handler) answerAccepted(ctx *fasthttp.RequestCtx, ep endpoint, items []*pending, accepted, dropped int) {
	switch {
	case ep == epPixel:
		writePixel(ctx)
		return
	case ep.segment():
		writeSegmentSuccess(ctx)
		return
	case ep == epPlausible:
		writePlausibleOK(ctx, false)
		return
	case ep == epUmami:
		writeUmamiOK(ctx)
		return
	}
	// Written by hand, as encoding/json would, into the response's own
	// (pooled) body buffer: encoding/json was a tenth of the single-event
	// path's allocations.
	body := ctx.Response.SwapBody(nil)[:0]
	if ep == epEvent {
		body = append(body, `{"status":"accepted","event_id":`...)
		body = appendJSONString(body, answeredID(items[0]))
	} else {
		body = append(body, `{"status":"accepted","accepted":`...)
		body = strconv.AppendInt(body, int64(accepted), 10)
		body = append(body, `,"dropped":`...)
		body = strconv.AppendInt(body, int64(dropped), 10)
		body = append(body, `,"event_ids":[`...)
		for i, it := range items {
			if i > 0 {
				body = append(body, ',')
			}
			body = appendJSONString(body, answeredID(it))
		}
		body = append(body, ']')
	}
	body = append(body, '}')
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(body)
}

// answeredID is the event id a 2xx answer lists for it, in the request's
// order: the sender's or the collector's, also for events dropped by
// privacy rules; empty for those refused before their id was settled.
func answeredID(it *pending) string {
	if it.skip != "" {
		return ""
	}
	return it.hit.EventId
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it: HTML-sensitive characters, control characters, U+2028 and
// U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
