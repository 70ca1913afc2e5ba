package intake

import (
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// Cookie lifetimes. Browsers cap cookies at 400 days, so longer would only
// be cut; the visitor cookie lives 13 months, the usual consent horizon.
const (
	optOutMaxAge  = 400 * 24 * time.Hour
	visitorMaxAge = 395 * 24 * time.Hour
)

// setVisitorCookie sets the first-party visitor id of a cookie-mode client.
// HttpOnly: no script needs to read it. SameSite=Lax: it is sent only when
// the collector is first-party to the page (served under the site's own
// domain), which is the only place a visitor cookie belongs; it never
// becomes a third-party cookie. Secure whenever the visitor's connection
// is HTTPS.
func (h *Handler) setVisitorCookie(ctx *fasthttp.RequestCtx, id string) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(VisitorCookie)
	c.SetValue(id)
	c.SetPath("/")
	c.SetMaxAge(int(visitorMaxAge.Seconds()))
	c.SetHTTPOnly(true)
	c.SetSecure(h.isHTTPS(ctx))
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(c)
}

// setOptOutCookie sets (or, with on false, deletes) the opt-out cookie. It
// holds no identifier, only "1", so it may travel cross-site: over HTTPS it
// is SameSite=None so that hits sent to the collector from any client's
// site carry it; browsers refuse None without Secure, so plain HTTP (local
// development) gets Lax. It is not HttpOnly: t.js, served first-party,
// reads it and sends nothing at all.
func (h *Handler) setOptOutCookie(ctx *fasthttp.RequestCtx, on bool) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(OptOutCookie)
	c.SetPath("/")
	if on {
		c.SetValue("1")
		c.SetMaxAge(int(optOutMaxAge.Seconds()))
	} else {
		c.SetValue("")
		c.SetExpire(fasthttp.CookieExpireDelete)
	}
	if h.isHTTPS(ctx) {
		c.SetSecure(true)
		c.SetSameSite(fasthttp.CookieSameSiteNoneMode)
	} else {
		c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	}
	ctx.Response.Header.SetCookie(c)
}

func (h *Handler) deleteVisitorCookie(ctx *fasthttp.RequestCtx) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(VisitorCookie)
	c.SetPath("/")
	c.SetExpire(fasthttp.CookieExpireDelete)
	c.SetHTTPOnly(true)
	c.SetSecure(h.isHTTPS(ctx))
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(c)
}

var optPage = template.Must(template.New("opt").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Analytics {{if .Out}}opt-out{{else}}opt-in{{end}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}</style></head>
<body>
{{if .Out}}<h1>You are opted out</h1>
<p>This browser now carries an opt-out cookie for this analytics service. Sites that use it
will not record your visits from this browser; any visitor cookie it had was deleted.</p>
<p>The cookie holds no identifier. Deleting your cookies removes it, and with it the opt-out.</p>
<p><a href="{{.Other}}">Opt in again</a></p>
{{else}}<h1>You are opted in</h1>
<p>The opt-out cookie was removed from this browser. Sites that use this analytics service
may record your visits again, within the privacy rules each of them chose.</p>
<p><a href="{{.Other}}">Opt out</a></p>{{end}}
</body></html>
`))

// serveOptOut sets (out) or clears the opt-out cookie. GET answers a small
// page a visitor can be linked to; POST answers 204 for scripts.
func (h *Handler) serveOptOut(ctx *fasthttp.RequestCtx, out bool) {
	if !ctx.IsGet() && !ctx.IsPost() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	h.setOptOutCookie(ctx, out)
	if out {
		h.deleteVisitorCookie(ctx)
	}
	if ctx.IsPost() {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	other := h.cfg.Paths.OptIn
	if !out {
		other = h.cfg.Paths.OptOut
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := optPage.Execute(ctx, struct {
		Out   bool
		Other string
	}{out, other}); err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "rendering page: "+err.Error())
	}
}

// originHost is the host of an Origin header, "" when it is not an http(s)
// origin ("null" from sandboxed frames and file pages included).
func originHost(origin []byte) string {
	u, err := url.Parse(string(origin))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// originAllowed reports whether a page at host may send events for c: its
// domains and their subdomains. A client that lists no domains accepts any
// origin, but never with credentials (see setCORS).
func originAllowed(c *registry.Client, host string) bool {
	if len(c.Domains) == 0 {
		return true
	}
	if host == "" {
		return false
	}
	for _, d := range c.Domains {
		d = strings.ToLower(d)
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// checkOrigin refuses browser requests from pages that are not among each
// client's domains, so another site cannot send events in a client's name
// from its visitors' browsers, and sets the CORS answer for allowed ones.
// Requests without Origin (servers, same-origin GETs, beacons of old
// browsers) are not browser cross-origin requests and pass.
func (h *Handler) checkOrigin(ctx *fasthttp.RequestCtx, items []*pending) error {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return nil
	}
	host := originHost(origin)
	credentials := true
	for _, it := range items {
		if !originAllowed(it.client, host) {
			r := refuse(fasthttp.StatusForbidden, "forbidden_origin", "origin %q is not one of the sites of client %s", truncate(string(origin)), it.client.ID)
			r.client = it.client.ID
			return r
		}
		if len(it.client.Domains) == 0 {
			credentials = false
		}
	}
	setCORS(ctx, origin, credentials)
	return nil
}

// setCORS lets the page read the answer. Credentials (the visitor and
// opt-out cookies) are allowed only for origins a client listed: an origin
// the collector merely tolerates gets the answer but no cookie exchange.
func setCORS(ctx *fasthttp.RequestCtx, origin []byte, credentials bool) {
	hd := &ctx.Response.Header
	hd.Add("Vary", "Origin")
	hd.SetBytesV("Access-Control-Allow-Origin", origin)
	if credentials {
		hd.Set("Access-Control-Allow-Credentials", "true")
	}
}

// preflight answers CORS preflight requests. A preflight carries no body,
// so the client is known only when the page put client_id or write_key in
// the query string; then its domains decide. Otherwise the origin is
// allowed to ask without credentials, and the real request is checked
// against its client's domains (checkOrigin) before anything is stored.
// t.js sends text/plain bodies, which need no preflight at all.
func (h *Handler) preflight(ctx *fasthttp.RequestCtx, ep endpoint) {
	origin := ctx.Request.Header.Peek("Origin")
	method := "POST"
	if ep == epPixel {
		method = "GET"
	}
	ctx.Response.Header.Set("Allow", method+", OPTIONS")
	if len(origin) == 0 {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	host := originHost(origin)
	credentials := false
	args := ctx.QueryArgs()
	var client *registry.Client
	if id := args.Peek("client_id"); len(id) > 0 {
		client, _ = h.cfg.Clients.ByID(string(id))
	} else if key := args.Peek("write_key"); len(key) > 0 {
		client, _ = h.cfg.Clients.ByWriteKey(string(key))
	}
	if client != nil {
		if !originAllowed(client, host) {
			writeError(ctx, fasthttp.StatusForbidden, "origin "+truncate(string(origin))+" is not one of the sites of client "+client.ID)
			return
		}
		credentials = len(client.Domains) > 0
	}
	setCORS(ctx, origin, credentials)
	hd := &ctx.Response.Header
	hd.Set("Access-Control-Allow-Methods", method+", OPTIONS")
	if ep == epUmami {
		// Umami's script sends back the cache token of its last answer.
		hd.Set("Access-Control-Allow-Headers", "Content-Type, Content-Encoding, Authorization, X-Umami-Cache")
	} else {
		// X-Write-Key is a Segment write key; X-Retry-Count marks an
		// analytics.js retry, whose preflight must pass for the retry to.
		hd.Set("Access-Control-Allow-Headers", "Content-Type, Content-Encoding, Authorization, X-Write-Key, X-Retry-Count")
	}
	hd.Set("Access-Control-Max-Age", "600")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
