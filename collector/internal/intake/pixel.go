package intake

import (
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// transparentGIF is the smallest valid 1x1 transparent GIF (43 bytes).
var transparentGIF = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// writePixel answers a beacon with the GIF; no cache may keep it, or the
// next view of the page would not reach the collector.
func writePixel(ctx *fasthttp.RequestCtx) {
	hd := &ctx.Response.Header
	hd.Set("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")
	hd.Set("Pragma", "no-cache")
	hd.Set("Expires", "0")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("image/gif")
	ctx.SetBody(transparentGIF)
}

// decodePixel reads a hit from the query string: the native event's field
// names, properties as prop.<name>=<value>. Without url, the page is the
// Referer, which is what an <img> in a page without JavaScript sends.
func (h *Handler) decodePixel(ctx *fasthttp.RequestCtx, received time.Time) (*pending, error) {
	args := ctx.QueryArgs()
	ev := &eventJSON{Properties: map[string]any{}}
	for k, v := range args.All() {
		// NUL characters go, as from JSON bodies (cleanJSONText).
		val := withoutNUL(string(v))
		switch key := withoutNUL(string(k)); key {
		case "client_id":
			ev.ClientID = val
		case "write_key":
			ev.WriteKey = val
		case "event_id":
			ev.EventID = val
		case "type":
			ev.Type = val
		case "name":
			ev.Name = val
		case "url":
			ev.URL = val
		case "referrer":
			ev.Referrer = val
		case "title":
			ev.Title = val
		case "language":
			ev.Language = val
		case "timezone":
			ev.Timezone = val
		case "user_id":
			ev.UserID = val
		case "screen_width", "screen_height":
			n, perr := strconv.ParseUint(val, 10, 32)
			if perr != nil {
				return nil, invalid("%s %q: want a whole number", key, truncate(val))
			}
			if key == "screen_width" {
				ev.ScreenWidth = uint32(n)
			} else {
				ev.ScreenHeight = uint32(n)
			}
		case "dnt":
			ev.DNT = val == "1" || val == "true"
		case "gpc":
			ev.GPC = val == "1" || val == "true"
		default:
			name, ok := strings.CutPrefix(key, "prop.")
			if !ok {
				return nil, invalid("unknown parameter %q", truncate(key))
			}
			ev.Properties[name] = val
		}
	}
	if ev.URL == "" {
		ev.URL = withoutNUL(string(ctx.Request.Header.Referer()))
	}
	client, err := h.lookupClient(ev)
	if err != nil {
		return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "%v", err)
	}
	hit, err := ev.toRawHit(received, false)
	if err != nil {
		return nil, err
	}
	return &pending{client: client, hit: hit}, nil
}
