package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/valyala/fasthttp"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// segmentMsg is one call of Segment's HTTP tracking API spec. Unknown
// fields are ignored, unlike in the native API: SDKs send many (library,
// integrations, traits, ...) that Alumini does not store.
type segmentMsg struct {
	Type        string         `json:"type"`
	MessageID   string         `json:"messageId"`
	UserID      any            `json:"userId"`
	AnonymousID any            `json:"anonymousId"`
	Event       string         `json:"event"`
	Name        string         `json:"name"`
	Properties  map[string]any `json:"properties"`
	Context     *segmentCtx    `json:"context"`
	Timestamp   string         `json:"timestamp"`
	// OriginalTimestamp is RudderStack's name for the sender's clock
	// reading, sent instead of timestamp.
	OriginalTimestamp string `json:"originalTimestamp"`
	SentAt            string `json:"sentAt"`
	// WriteKey in the body is how analytics.js in browsers authenticates
	// (it sends text/plain without an Authorization header).
	WriteKey string `json:"writeKey"`
	// Traits of identify calls are deliberately not read: they are
	// personal data (names, e-mail addresses) an analytics store must not
	// collect by accident.
}

type segmentCtx struct {
	IP        string `json:"ip"`
	UserAgent string `json:"userAgent"`
	Locale    string `json:"locale"`
	Timezone  string `json:"timezone"`
	Page      *struct {
		URL      string `json:"url"`
		Referrer string `json:"referrer"`
		Title    string `json:"title"`
	} `json:"page"`
	Screen *struct {
		Width  json.Number `json:"width"`
		Height json.Number `json:"height"`
	} `json:"screen"`
	// Not in Segment's spec: privacy signals a server forwards from the
	// visitor's browser, as the native API's dnt and gpc fields.
	DNT bool `json:"dnt"`
	GPC bool `json:"gpc"`
}

// segmentBatchMessages is the most messages a Segment batch may hold
// when -max-batch-events is lower: Segment's own limit (2,500 events and
// 500 KB a batch). The SDKs fill batches up to their byte limits when told
// to send large ones (analytics-node: 480 KB; RudderStack's Node SDK:
// 450 KB; analytics.js batching: 500 KB), about 1,600 messages of 300
// bytes; a batch Segment takes must not meet a 400 the SDK never retries.
const segmentBatchMessages = 2500

type segmentBatch struct {
	Batch    []json.RawMessage `json:"batch"`
	Context  *segmentCtx       `json:"context"`
	SentAt   string            `json:"sentAt"`
	WriteKey string            `json:"writeKey"`
}

// segmentAuth finds the client of a Segment request from HTTP Basic auth
// (the write key is the user name, the password is empty), falling back to
// the X-Write-Key header and then to the body's writeKey. A secret server
// key from the client registry marks the send as server-side, and only
// such sends may set the visitor's IP.
func (h *Handler) segmentAuth(ctx *fasthttp.RequestCtx, bodyKey string) (*registry.Client, bool, error) {
	key := bodyKey
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 0 {
		user, err := basicUser(auth)
		if err != nil {
			return nil, false, err
		}
		key = user
	} else if k := ctx.Request.Header.Peek(writeKeyHeader); len(k) > 0 {
		key = strings.TrimSpace(string(k))
	}
	if key == "" {
		return nil, false, refuse(fasthttp.StatusUnauthorized, "unknown_client", "write key required: send it as the HTTP Basic user name")
	}
	if c, err := h.cfg.Clients.ByServerKey(key); err == nil {
		return c, true, nil
	}
	c, err := h.cfg.Clients.ByWriteKey(key)
	if err != nil {
		return nil, false, refuse(fasthttp.StatusUnauthorized, "unknown_client", "unknown write key")
	}
	return c, false, nil
}

// decodeSegment reads the Segment-spec endpoints. A batch is all or
// nothing, as the native one; its errors name the message's index.
func (h *Handler) decodeSegment(ctx *fasthttp.RequestCtx, ep endpoint, body []byte, received time.Time) ([]*pending, error) {
	if err := duplicateNames(body); err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	var shared *segmentCtx
	var bodyKey, batchSentAt string
	if ep == epSegBatch {
		var b segmentBatch
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, invalid("malformed JSON: %v", err)
		}
		if len(b.Batch) == 0 {
			return nil, invalid("batch is empty: send {\"batch\": [...]}")
		}
		if limit := max(h.cfg.MaxBatchEvents, segmentBatchMessages); len(b.Batch) > limit {
			return nil, invalid("batch holds %d messages; the limit is %d", len(b.Batch), limit)
		}
		raws, shared, bodyKey, batchSentAt = b.Batch, b.Context, b.WriteKey, b.SentAt
	} else {
		raws = []json.RawMessage{body}
	}
	msgs := make([]*segmentMsg, len(raws))
	for i, raw := range raws {
		var m segmentMsg
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			if ep == epSegBatch {
				return nil, invalid("message %d: malformed JSON: %v", i, err)
			}
			return nil, invalid("malformed JSON: %v", err)
		}
		if bodyKey == "" {
			bodyKey = m.WriteKey
		}
		msgs[i] = &m
	}
	client, serverSide, err := h.segmentAuth(ctx, bodyKey)
	if err != nil {
		return nil, err
	}
	items := make([]*pending, len(msgs))
	for i, m := range msgs {
		if m.SentAt == "" {
			m.SentAt = batchSentAt
		}
		if m.Context == nil {
			m.Context = shared
		}
		if ep != epSegBatch {
			m.Type = strings.TrimPrefix(ep.label(), "segment_")
		}
		it, err := segmentToPending(m, client, serverSide, received)
		if err != nil {
			if ep == epSegBatch {
				err = invalid("message %d: %v", i, err)
			}
			r := refuse(fasthttp.StatusBadRequest, "invalid", "%v", err)
			r.client = client.ID
			return nil, r
		}
		items[i] = it
	}
	return items, nil
}

// segmentPageProps are the page properties Segment's spec defines; they
// become the hit's own fields rather than custom properties.
var segmentPageProps = map[string]bool{"url": true, "path": true, "referrer": true, "title": true, "search": true}

func segmentToPending(m *segmentMsg, client *registry.Client, serverSide bool, received time.Time) (*pending, error) {
	it := &pending{client: client}
	ev := &eventJSON{EventID: m.MessageID, Name: m.Name}
	userID, err := scalar("userId", m.UserID)
	if err != nil {
		return nil, err
	}
	anonID, err := scalar("anonymousId", m.AnonymousID)
	if err != nil {
		return nil, err
	}
	if userID == "" && anonID == "" {
		return nil, invalid("userId or anonymousId is required")
	}
	if len(anonID) > maxShortFieldLen {
		return nil, invalid("anonymousId is %d bytes long; the limit is %d", len(anonID), maxShortFieldLen)
	}
	ev.UserID, it.anonymousID = userID, anonID
	props := m.Properties
	switch m.Type {
	case "track":
		ev.Type = "custom"
		ev.Name = m.Event
		if ev.Name == "" {
			return nil, invalid("event is required for a track call")
		}
	case "page", "screen":
		ev.Type = "pageview"
		if m.Type == "page" {
			ev.URL, _ = props["url"].(string)
			ev.Referrer, _ = props["referrer"].(string)
			ev.Title, _ = props["title"].(string)
			rest := make(map[string]any, len(props))
			for k, v := range props {
				if !segmentPageProps[k] {
					rest[k] = v
				}
			}
			props = rest
		}
	case "identify":
		ev.Type = "identify"
		if userID == "" {
			return nil, invalid("userId is required for an identify call")
		}
		props = nil
	default:
		// alias, group and anything newer: valid Segment, not stored here.
		it.skip = "unsupported_type"
		return it, nil
	}
	// Nested values (product lists of e-commerce events) are left out
	// rather than refused: an SDK cannot choose to send them differently.
	for k, v := range props {
		switch v.(type) {
		case map[string]any, []any:
			delete(props, k)
		}
	}
	ev.Properties = props
	if c := m.Context; c != nil {
		if c.Page != nil {
			ev.URL = firstNonEmpty(c.Page.URL, ev.URL)
			ev.Referrer = firstNonEmpty(c.Page.Referrer, ev.Referrer)
			ev.Title = firstNonEmpty(c.Page.Title, ev.Title)
		}
		ev.Language, ev.Timezone = c.Locale, c.Timezone
		if c.Screen != nil {
			w, _ := strconv.ParseFloat(c.Screen.Width.String(), 64)
			hgt, _ := strconv.ParseFloat(c.Screen.Height.String(), 64)
			if w > 0 && w < 1e6 && hgt > 0 && hgt < 1e6 {
				ev.ScreenWidth, ev.ScreenHeight = uint32(w), uint32(hgt)
			}
		}
		ev.DNT, ev.GPC = c.DNT, c.GPC
		if len(c.UserAgent) > maxURLLen {
			return nil, invalid("context.userAgent is %d bytes long; the limit is %d", len(c.UserAgent), maxURLLen)
		}
		it.userAgent = c.UserAgent
		if c.IP != "" && serverSide {
			ip, err := netip.ParseAddr(c.IP)
			if err != nil {
				return nil, invalid("context.ip %q: want an IPv4 or IPv6 address", truncate(c.IP))
			}
			it.ip = ip
		}
	}
	// Segment corrects the sender's clock by the gap between sentAt and
	// the arrival: timestamp + (received - sentAt).
	if m.Timestamp == "" {
		m.Timestamp = m.OriginalTimestamp
	}
	if m.Timestamp != "" {
		ts, err := time.Parse(time.RFC3339Nano, m.Timestamp)
		if err != nil {
			return nil, invalid("timestamp %q: want ISO 8601, such as 2026-11-25T14:03:00.000Z", truncate(m.Timestamp))
		}
		if m.SentAt != "" {
			sent, err := time.Parse(time.RFC3339Nano, m.SentAt)
			if err != nil {
				return nil, invalid("sentAt %q: want ISO 8601, such as 2026-11-25T14:03:00.000Z", truncate(m.SentAt))
			}
			ts = ts.Add(received.Sub(sent))
		}
		ev.Timestamp = ts.UTC().Format(time.RFC3339Nano)
	}
	hit, err := ev.toRawHit(received, true)
	if err != nil {
		return nil, err
	}
	it.hit = hit
	return it, nil
}

// scalar reads an id that SDKs send as a string or, sometimes, a number.
func scalar(field string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", invalid("%s: want a string", field)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeSegmentSuccess(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"success":true}`)
}

// duplicateNames refuses a body with a name twice in one object, at any
// depth: encoding/json would keep the last one, and a second writeKey or
// messageId could file the event under another client or event.
func duplicateNames(body []byte) error {
	err := jsontext.NewDecoder(bytes.NewReader(body)).SkipValue()
	if errors.Is(err, jsontext.ErrDuplicateName) {
		var serr *jsontext.SyntacticError
		if errors.As(err, &serr) {
			return invalid("malformed JSON: field %q appears twice in one object", string(serr.JSONPointer))
		}
		return invalid("malformed JSON: %v", err)
	}
	return nil // other errors are encoding/json's to name
}
