package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// Plausible's event API (POST /api/event, as Plausible's script,
// @plausible-analytics/tracker and plausible-tracker send it) shares its
// path with the native event: a site moving from Plausible changes only
// the host its tracker sends to. The two are told apart by shape: a
// Plausible event names its site by domain ("d" or "domain"), a field the
// native format refuses. See docs/migrating.md.

// plausibleEvent is Plausible's payload; each field has a short name
// (what the trackers send) and a long one (what its documentation shows
// for servers). Unknown fields (v, sd, e, ...) are ignored, as Plausible
// does.
type plausibleEvent struct {
	N        string          `json:"n"`
	Name     string          `json:"name"`
	U        string          `json:"u"`
	URL      string          `json:"url"`
	D        string          `json:"d"`
	Domain   string          `json:"domain"`
	R        *string         `json:"r"`
	Referrer *string         `json:"referrer"`
	P        json.RawMessage `json:"p"`
	Props    json.RawMessage `json:"props"`
	M        json.RawMessage `json:"m"`
	Meta     json.RawMessage `json:"meta"`
	Dollar   json.RawMessage `json:"$"`
	Revenue  json.RawMessage `json:"revenue"`
	W        json.Number     `json:"w"`
	// i/interactive false marks an event that does not end a bounce in
	// Plausible; Alumini's bounce rate counts page views only, so every
	// custom event is non-interactive there and the flag is not kept.
}

// isPlausible reports whether a body posted to the event path is
// Plausible's event: a JSON object with a "d" or "domain" field at the
// top, which the native format refuses as unknown, so the native decoder
// has refused every such body first.
func isPlausible(body []byte) bool {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return false
	}
	o, err := v.Object()
	return err == nil && (o.Get("d") != nil || o.Get("domain") != nil)
}

// decodePlausible turns a Plausible event into a hit of the client whose
// domains list its domain. "engagement" events (time on page and scroll
// depth of the page view before) are answered and counted as
// unsupported_type: Alumini keeps no such measure, and a custom event per
// page view would double the events counted.
func (h *Handler) decodePlausible(body []byte, received time.Time) ([]*pending, error) {
	var pe plausibleEvent
	if err := decodeJSON(body, &pe); err != nil {
		return nil, err
	}
	client, err := h.plausibleClient(firstNonEmpty(pe.D, pe.Domain))
	if err != nil {
		return nil, err
	}
	it := &pending{client: client}
	name := firstNonEmpty(pe.N, pe.Name)
	ev := &eventJSON{URL: firstNonEmpty(pe.U, pe.URL)}
	switch name {
	case "":
		return nil, invalid("n (the event name) is required: pageview, or the name of a custom event")
	case "pageview":
		ev.Type = "pageview"
	case "engagement":
		it.skip = "unsupported_type"
		return []*pending{it}, nil
	default:
		ev.Type, ev.Name = "custom", name
	}
	if ev.URL == "" {
		return nil, invalid("u (the page URL) is required")
	}
	if pe.R != nil {
		ev.Referrer = *pe.R
	} else if pe.Referrer != nil {
		ev.Referrer = *pe.Referrer
	}
	if w, err := pe.W.Int64(); err == nil && w > 0 && w < 1e6 {
		ev.ScreenWidth = uint32(w)
	}
	props, err := plausibleProps(firstRaw(pe.P, pe.Props, pe.M, pe.Meta))
	if err != nil {
		return nil, err
	}
	if err := plausibleRevenue(firstRaw(pe.Dollar, pe.Revenue), &props); err != nil {
		return nil, err
	}
	ev.Properties = props
	hit, err := ev.toRawHit(received, false)
	if err != nil {
		return nil, err
	}
	it.hit = hit
	return []*pending{it}, nil
}

// plausibleClient finds the client of a Plausible domain. Plausible lets
// one event go to several sites ("a.example,b.example"); Alumini files it
// under the first one a client lists.
func (h *Handler) plausibleClient(domains string) (*registry.Client, error) {
	if strings.TrimSpace(domains) == "" {
		return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "d (the site's domain) is required")
	}
	for _, d := range strings.Split(domains, ",") {
		c, err := h.cfg.Clients.ByDomain(strings.TrimSpace(d))
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, registry.ErrAmbiguous):
			return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "domain %q is listed by more than one client; send native events with client_id instead", truncate(d))
		}
	}
	return nil, refuse(fasthttp.StatusBadRequest, "unknown_client", "no client lists the domain %q in its domains", truncate(domains))
}

// decodeJSON decodes a compatibility payload: a name twice in one object
// is refused (see duplicateNames), numbers stay as sent.
func decodeJSON(body []byte, v any) error {
	if err := duplicateNames(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return invalid("malformed JSON: %v", err)
	}
	return nil
}

func firstRaw(raws ...json.RawMessage) json.RawMessage {
	for _, r := range raws {
		if len(r) > 0 && string(r) != "null" {
			return r
		}
	}
	return nil
}

// plausibleProps reads custom properties: an object, or (as
// plausible-tracker sends them) an object encoded as a JSON string.
func plausibleProps(raw json.RawMessage) (map[string]any, error) {
	if raw == nil {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalid("malformed JSON: p: %v", err)
		}
		raw = json.RawMessage(s)
	}
	var props map[string]any
	if err := decodeJSON(raw, &props); err != nil {
		return nil, invalid("p (the custom properties): want an object of strings, numbers and booleans: %v", err)
	}
	return props, nil
}

// plausibleRevenue keeps an event's revenue ({"amount": 15.99, "currency":
// "USD"}, the amount a number or a string) as the custom properties
// revenue_amount and revenue_currency.
func plausibleRevenue(raw json.RawMessage, props *map[string]any) error {
	if raw == nil {
		return nil
	}
	var rev struct {
		Amount   any    `json:"amount"`
		Currency string `json:"currency"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&rev); err != nil {
		return invalid(`revenue: want {"amount": 15.99, "currency": "USD"}`)
	}
	switch a := rev.Amount.(type) {
	case json.Number:
	case string:
		if _, err := strconv.ParseFloat(a, 64); err != nil {
			return invalid("revenue.amount %q: want a number", truncate(a))
		}
	default:
		return invalid(`revenue.amount: want a number or a numeric string`)
	}
	if len(rev.Currency) != 3 {
		return invalid("revenue.currency %q: want an ISO 4217 code such as USD", truncate(rev.Currency))
	}
	if *props == nil {
		*props = map[string]any{}
	}
	(*props)["revenue_amount"] = rev.Amount
	(*props)["revenue_currency"] = rev.Currency
	return nil
}

// writePlausibleOK answers as Plausible's event API does, whether the
// event was stored or dropped by a privacy rule (then marked, as
// Plausible marks the events it drops).
func writePlausibleOK(ctx *fasthttp.RequestCtx, dropped bool) {
	if dropped {
		ctx.Response.Header.Set("X-Plausible-Dropped", "1")
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("ok")
}
