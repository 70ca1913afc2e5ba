package intake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fasthttp"
)

// scriptAsset is the tracker script, compressed once at start.
type scriptAsset struct {
	plain, gzipped []byte
	etag           string
}

func newScriptAsset(src []byte) scriptAsset {
	if len(src) == 0 {
		return scriptAsset{}
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level never fails.
	_, _ = zw.Write(src)                                     // writes to a bytes.Buffer never fail.
	_ = zw.Close()
	sum := sha256.Sum256(src)
	return scriptAsset{plain: src, gzipped: buf.Bytes(), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// serveScript serves t.js. Browsers may cache it for an hour and then
// revalidate with the ETag, so a new collector version reaches pages soon.
func (h *Handler) serveScript(ctx *fasthttp.RequestCtx) {
	s := &h.script
	if s.plain == nil {
		writeError(ctx, fasthttp.StatusNotFound, "no tracker script is configured")
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	hd := &ctx.Response.Header
	hd.Set("Cache-Control", "public, max-age=3600")
	hd.Set("ETag", s.etag)
	hd.Set("Vary", "Accept-Encoding")
	hd.Set("X-Content-Type-Options", "nosniff")
	// Any page may load the script; it holds nothing secret.
	hd.Set("Access-Control-Allow-Origin", "*")
	ctx.SetContentType("application/javascript; charset=utf-8")
	if string(ctx.Request.Header.Peek("If-None-Match")) == s.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		hd.Set("Content-Encoding", "gzip")
		ctx.SetBody(s.gzipped)
		return
	}
	ctx.SetBody(s.plain)
}
