package intake

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// refusalsPerSecond is how many refusals of one reason are logged each
// second; the rest of that second's are only counted
// (alumini_collector_events_dropped_total). A client whose SDK is refused
// sends the same refusal again and again, and a flood must not drown the
// log or cost the collector its CPU.
const refusalsPerSecond = 5

// refusalLog is the logger of refused requests: zap's sampler keeps the
// first refusalsPerSecond entries of each message (one per reason) in
// every second and drops the rest.
func refusalLog(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, refusalsPerSecond, 0)
	}))
}

// logRefusal logs why a request was refused and whose it was, with what a
// sender needs to see to fix its request: the answer, and the headers
// that decide how the body is read. No IP address: a refusal is not a
// reason to store one.
func (h *Handler) logRefusal(ctx *fasthttp.RequestCtx, endpoint string, r *refusal) {
	ce := h.refusals.Check(zap.InfoLevel, "request refused: "+r.reason)
	if ce == nil {
		return
	}
	hd := &ctx.Request.Header
	ce.Write(
		zap.String("reason", r.reason),
		zap.Int("status", r.status),
		zap.String("error", r.msg),
		zap.String("client", h.refusedClient(ctx, r)),
		zap.String("endpoint", endpoint),
		zap.String("content_type", truncate(string(hd.ContentType()))),
		zap.String("content_encoding", truncate(string(hd.ContentEncoding()))),
		zap.String("user_agent", truncate(string(hd.UserAgent()))),
		zap.String("origin", truncate(string(hd.Peek("Origin")))),
	)
}

// refusedClient is the id of the client a refused request was for: the
// one the refusal names, or else the one its credentials outside the body
// name (Basic auth, the write-key header, the query string); "" when
// unknown. The body is not read again for it.
func (h *Handler) refusedClient(ctx *fasthttp.RequestCtx, r *refusal) string {
	if r.client != "" {
		return r.client
	}
	args := ctx.QueryArgs()
	if id := args.Peek("client_id"); len(id) > 0 {
		if c, err := h.cfg.Clients.ByID(string(id)); err == nil {
			return c.ID
		}
	}
	key := string(args.Peek("write_key"))
	if k := headerWriteKey(ctx); k != "" {
		key = k
	}
	if key == "" {
		return ""
	}
	if c, err := h.cfg.Clients.ByWriteKey(key); err == nil {
		return c.ID
	}
	if c, err := h.cfg.Clients.ByServerKey(key); err == nil {
		return c.ID
	}
	return ""
}

// writeKeyHeader is the header some Segment-spec senders (proxies, server
// integrations) put the write key in instead of Basic auth.
const writeKeyHeader = "X-Write-Key"

// headerWriteKey is the write key a request carries in its headers: the
// Basic auth user name, else X-Write-Key; "" when there is none or the
// Authorization header is not Basic.
func headerWriteKey(ctx *fasthttp.RequestCtx) string {
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 0 {
		if user, err := basicUser(auth); err == nil {
			return user
		}
	}
	return strings.TrimSpace(string(ctx.Request.Header.Peek(writeKeyHeader)))
}

// basicUser is the user name of HTTP Basic credentials, or a refusal
// saying what is wrong with them.
func basicUser(auth []byte) (string, error) {
	const prefix = "basic "
	if len(auth) < len(prefix) || !strings.EqualFold(string(auth[:len(prefix)]), prefix) {
		return "", refuse(fasthttp.StatusUnauthorized, "unknown_client", "Authorization must be HTTP Basic with the write key as user name")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(auth[len(prefix):])))
	if err != nil {
		return "", refuse(fasthttp.StatusUnauthorized, "unknown_client", "Authorization: malformed Basic credentials")
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user, nil
}
