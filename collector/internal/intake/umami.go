package intake

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// Umami's collect API (POST /api/send, as Umami's tracker script and
// @umami/node send it): the website id names the client through the
// registry's umami_website_ids. See docs/migrating.md.

type umamiSend struct {
	Type    string        `json:"type"`
	Payload *umamiPayload `json:"payload"`
}

type umamiPayload struct {
	Website  string         `json:"website"`
	Hostname string         `json:"hostname"`
	URL      string         `json:"url"`
	Referrer string         `json:"referrer"`
	Title    string         `json:"title"`
	Name     string         `json:"name"`
	Data     map[string]any `json:"data"`
	Language string         `json:"language"`
	Screen   string         `json:"screen"`
}

// decodeUmami turns an Umami send into a hit: an event without a name is
// a page view, one with a name a custom event with data as its properties.
// Identify sends are answered and counted as unsupported_type: their data
// describe a person, which Alumini does not collect by accident (as
// Segment's traits).
func (h *Handler) decodeUmami(body []byte, received time.Time) ([]*pending, error) {
	var s umamiSend
	if err := decodeJSON(body, &s); err != nil {
		return nil, err
	}
	if s.Payload == nil {
		return nil, invalid(`payload is required: send {"type": "event", "payload": {"website": ...}}`)
	}
	p := s.Payload
	if p.Website == "" {
		return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "payload.website (the website id) is required")
	}
	client, err := h.cfg.Clients.ByUmamiWebsite(p.Website)
	if err != nil {
		return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "no client lists the website id %q in its umami_website_ids", truncate(p.Website))
	}
	it := &pending{client: client}
	switch s.Type {
	case "event":
	case "identify":
		it.skip = "unsupported_type"
		return []*pending{it}, nil
	default:
		return nil, invalid("type %q: want event (or identify)", truncate(s.Type))
	}
	ev := &eventJSON{Type: "pageview", Referrer: p.Referrer, Language: p.Language,
		Title: unescapeTitle(p.Title)}
	ev.URL, err = umamiURL(p, client)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(ev.Referrer, "/") && ev.URL != "" {
		// The script's referrer after a client-side navigation is the
		// previous path: a page of the same site.
		if u, err := url.Parse(ev.URL); err == nil {
			ev.Referrer = u.Scheme + "://" + u.Host + ev.Referrer
		}
	}
	if p.Name != "" {
		ev.Type, ev.Name = "custom", p.Name
		ev.Properties = flattenData(p.Data)
	}
	if w, hgt, ok := strings.Cut(p.Screen, "x"); ok {
		wi, err1 := strconv.ParseUint(w, 10, 32)
		hi, err2 := strconv.ParseUint(hgt, 10, 32)
		if err1 == nil && err2 == nil && wi < 1e6 && hi < 1e6 {
			ev.ScreenWidth, ev.ScreenHeight = uint32(wi), uint32(hi)
		}
	}
	hit, err := ev.toRawHit(received, true)
	if err != nil {
		return nil, err
	}
	it.hit = hit
	return []*pending{it}, nil
}

// umamiURL makes the absolute page URL Alumini stores from Umami's path
// and host name; a send without a host name (a server's custom event)
// takes the client's first domain, and one without either has no page.
func umamiURL(p *umamiPayload, c *registry.Client) (string, error) {
	u := p.URL
	if u == "" && p.Name != "" {
		return "", nil
	}
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		return u, nil
	}
	host := p.Hostname
	if host == "" && len(c.Domains) > 0 {
		host = c.Domains[0]
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", invalid("payload.hostname %q: want the page's host name, such as example.com", truncate(host))
	}
	if !strings.HasPrefix(u, "/") {
		u = "/" + u
	}
	return "https://" + host + u, nil
}

// flattenData turns Umami's event data into properties as Umami stores
// them: nested objects flattened with dotted names, arrays as their JSON.
func flattenData(data map[string]any) map[string]any {
	if len(data) == 0 {
		return nil
	}
	out := make(map[string]any, len(data))
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+".", v)
			case []any:
				b, _ := json.Marshal(v) // decoded from JSON: it encodes again.
				out[prefix+k] = string(b)
			default:
				out[prefix+k] = v
			}
		}
	}
	walk("", data)
	return out
}

// unescapeTitle undoes the encodeURIComponent Umami's script applies to
// the title, keeping the text as sent when it was not so encoded.
func unescapeTitle(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// writeUmamiOK answers as Umami's collect API does; the cache token
// Umami's script sends back is not used by Alumini, so it is empty.
func writeUmamiOK(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"cache":""}`)
}
