package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Limits on what one event may carry; the error for each names the field.
const (
	maxEventIDLen     = 128
	maxNameLen        = 200
	maxURLLen         = 2048
	maxTitleLen       = 512
	maxShortFieldLen  = 128
	maxProperties     = 30
	maxPropertyKeyLen = 64
	maxPropertyValLen = 512
	// A client clock may be off; times further in the future than this are
	// refused, and events older than maxEventAge too (storage is by month).
	maxClockSkew = 10 * time.Minute
	maxEventAge  = 72 * time.Hour
)

// eventJSON is the native JSON event. Unknown fields are refused so that a
// misspelt field fails loudly at integration time instead of losing data.
type eventJSON struct {
	ClientID     string         `json:"client_id"`
	WriteKey     string         `json:"write_key"`
	EventID      string         `json:"event_id"`
	Type         string         `json:"type"`
	Name         string         `json:"name"`
	URL          string         `json:"url"`
	Referrer     string         `json:"referrer"`
	Title        string         `json:"title"`
	Language     string         `json:"language"`
	ScreenWidth  uint32         `json:"screen_width"`
	ScreenHeight uint32         `json:"screen_height"`
	Timezone     string         `json:"timezone"`
	Timestamp    string         `json:"timestamp"`
	UserID       string         `json:"user_id"`
	Properties   map[string]any `json:"properties"`
	// props are the properties already checked, set by the native decoder
	// instead of Properties.
	props map[string]string
	// Privacy signals forwarded by server-side senders.
	DNT bool `json:"dnt"`
	GPC bool `json:"gpc"`
}

// inputError is a problem with what the sender sent; its text is shown to
// the sender as it is, so it names the field and the limit.
type inputError string

func (e inputError) Error() string { return string(e) }

func invalid(format string, args ...any) error {
	return inputError(fmt.Sprintf(format, args...))
}

// parsers are reused: the native decoder is the collector's hottest code,
// and fastjson, unlike encoding/json, neither reflects nor allocates per
// field. Strings are copied out before a parser goes back to the pool.
var parsers fastjson.ParserPool

func decodeEvent(body []byte) (*eventJSON, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		if bytes.Contains([]byte(err.Error()), []byte("unexpected tail")) {
			return nil, invalid("malformed JSON: more than one value in the body (use /api/batch for many events)")
		}
		return nil, invalid("malformed JSON: %v", err)
	}
	return eventFromValue(v)
}

// decodeBatch reads a JSON array of events or newline-delimited JSON (one
// event per line, blank lines allowed). Errors name the event's index, so a
// sender can find the bad one in a batch of hundreds.
func decodeBatch(body []byte, maxEvents int) ([]*eventJSON, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "[]" {
		return nil, invalid("empty batch: send a JSON array or newline-delimited JSON objects")
	}
	p := parsers.Get()
	defer parsers.Put(p)
	if trimmed[0] == '[' {
		v, err := p.ParseBytes(trimmed)
		if err != nil {
			return nil, invalid("malformed JSON: %v", err)
		}
		arr, err := v.Array()
		if err != nil {
			return nil, invalid("malformed JSON: %v", err)
		}
		if len(arr) > maxEvents {
			return nil, invalid("batch holds more than %d events; the limit is %d", maxEvents, maxEvents)
		}
		if len(arr) == 0 {
			return nil, invalid("empty batch: send a JSON array or newline-delimited JSON objects")
		}
		out := make([]*eventJSON, len(arr))
		store := make([]eventJSON, len(arr)) // one allocation for the batch
		for i, item := range arr {
			if err := fillEvent(&store[i], item); err != nil {
				return nil, invalid("event %d: %v", i, err)
			}
			out[i] = &store[i]
		}
		return out, nil
	}
	// NDJSON: a JSON text never holds a raw newline inside a string, so
	// splitting on newlines is exact.
	var out []*eventJSON
	for rest := trimmed; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if len(out) == maxEvents {
			return nil, invalid("batch holds more than %d events; the limit is %d", maxEvents, maxEvents)
		}
		v, err := p.ParseBytes(line)
		if err != nil {
			return nil, invalid("event %d: malformed JSON: %v", len(out), err)
		}
		ev, err := eventFromValue(v)
		if err != nil {
			return nil, invalid("event %d: %v", len(out), err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// eventFromValue copies one parsed event out of the parser. Unknown fields
// are refused, as are values of the wrong JSON type.
func eventFromValue(v *fastjson.Value) (*eventJSON, error) {
	ev := &eventJSON{}
	if err := fillEvent(ev, v); err != nil {
		return nil, err
	}
	return ev, nil
}

func fillEvent(ev *eventJSON, v *fastjson.Value) error {
	obj, err := v.Object()
	if err != nil {
		return invalid("malformed JSON: want an object, got %s", v.Type())
	}
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		switch string(k) {
		case "client_id":
			ev.ClientID, err = jsonString(k, v)
		case "write_key":
			ev.WriteKey, err = jsonString(k, v)
		case "event_id":
			ev.EventID, err = jsonString(k, v)
		case "type":
			ev.Type, err = jsonString(k, v)
		case "name":
			ev.Name, err = jsonString(k, v)
		case "url":
			ev.URL, err = jsonString(k, v)
		case "referrer":
			ev.Referrer, err = jsonString(k, v)
		case "title":
			ev.Title, err = jsonString(k, v)
		case "language":
			ev.Language, err = jsonString(k, v)
		case "timezone":
			ev.Timezone, err = jsonString(k, v)
		case "timestamp":
			ev.Timestamp, err = jsonString(k, v)
		case "user_id":
			ev.UserID, err = jsonString(k, v)
		case "screen_width":
			ev.ScreenWidth, err = jsonUint32(k, v)
		case "screen_height":
			ev.ScreenHeight, err = jsonUint32(k, v)
		case "dnt":
			ev.DNT, err = jsonBool(k, v)
		case "gpc":
			ev.GPC, err = jsonBool(k, v)
		case "properties":
			ev.props, err = jsonProperties(v)
		default:
			err = invalid("malformed JSON: unknown field %q", truncate(string(k)))
		}
	})
	return err
}

func jsonString(k []byte, v *fastjson.Value) (string, error) {
	switch v.Type() {
	case fastjson.TypeNull:
		return "", nil
	case fastjson.TypeString:
		b, _ := v.StringBytes() // the type is string: no error.
		return string(b), nil
	}
	return "", invalid("malformed JSON: %s: want a string, got %s", k, v.Type())
}

func jsonUint32(k []byte, v *fastjson.Value) (uint32, error) {
	if v.Type() == fastjson.TypeNull {
		return 0, nil
	}
	n, err := v.Uint()
	if err != nil || n > 1<<31 {
		return 0, invalid("malformed JSON: %s: want a whole number of pixels", k)
	}
	return uint32(n), nil
}

func jsonBool(k []byte, v *fastjson.Value) (bool, error) {
	switch v.Type() {
	case fastjson.TypeNull:
		return false, nil
	case fastjson.TypeTrue:
		return true, nil
	case fastjson.TypeFalse:
		return false, nil
	}
	return false, invalid("malformed JSON: %s: want true or false", k)
}

// jsonProperties checks the properties object as properties() does and
// keeps them as strings straight away, without boxing values in a
// map[string]any first (the batch path's largest allocation otherwise).
func jsonProperties(v *fastjson.Value) (map[string]string, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	obj, err := v.Object()
	if err != nil {
		return nil, invalid("malformed JSON: properties: want an object, got %s", v.Type())
	}
	if n := obj.Len(); n > maxProperties {
		return nil, invalid("properties has %d entries; the limit is %d", n, maxProperties)
	} else if n == 0 {
		return nil, nil
	}
	out := make(map[string]string, obj.Len())
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		var val any
		switch v.Type() {
		case fastjson.TypeString:
			b, _ := v.StringBytes() // the type is string: no error.
			val = string(b)
		case fastjson.TypeNumber:
			val = json.Number(v.String())
		case fastjson.TypeTrue:
			val = true
		case fastjson.TypeFalse:
			val = false
		case fastjson.TypeNull:
			val = nil
		default:
			val = struct{}{} // object or array: property() refuses it by name.
		}
		s, keep, perr := property(string(k), val)
		if perr != nil {
			err = perr
		} else if keep {
			out[string(k)] = s
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var eventTypes = map[string]aluminiv1.EventType{
	"":         aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
	"pageview": aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
	"custom":   aluminiv1.EventType_EVENT_TYPE_CUSTOM,
	"identify": aluminiv1.EventType_EVENT_TYPE_IDENTIFY,
}

// toRawHit validates ev and fills the client-sent part of a raw hit.
// urlOptional lets page views without a URL through: Segment's page calls
// from servers and screen calls from apps have none.
func (ev *eventJSON) toRawHit(received time.Time, urlOptional bool) (*aluminiv1.RawHit, error) {
	hit := &aluminiv1.RawHit{}
	if err := ev.fillRawHit(hit, &aluminiv1.Consent{}, received, urlOptional); err != nil {
		return nil, err
	}
	return hit, nil
}

// fillRawHit is toRawHit into a hit and consent the caller allocated (a
// batch allocates all of them at once).
func (ev *eventJSON) fillRawHit(hit *aluminiv1.RawHit, consent *aluminiv1.Consent, received time.Time, urlOptional bool) error {
	hit.Properties, hit.Consent = nil, nil
	_, err := ev.fill(hit, consent, received, urlOptional)
	return err
}

func (ev *eventJSON) fill(hit *aluminiv1.RawHit, consent *aluminiv1.Consent, received time.Time, urlOptional bool) (*aluminiv1.RawHit, error) {
	typ, ok := eventTypes[ev.Type]
	if !ok {
		return nil, invalid("type %q: want pageview, custom or identify", ev.Type)
	}
	consent.DoNotTrack, consent.GlobalPrivacyControl = ev.DNT, ev.GPC
	hit.EventId = ev.EventID
	hit.Type = typ
	hit.Name = ev.Name
	hit.Url = ev.URL
	hit.Referrer = ev.Referrer
	hit.Title = ev.Title
	hit.Language = ev.Language
	hit.ScreenWidth = ev.ScreenWidth
	hit.ScreenHeight = ev.ScreenHeight
	hit.Timezone = ev.Timezone
	hit.UserId = ev.UserID
	hit.Consent = consent
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"event_id", ev.EventID, maxEventIDLen},
		{"name", ev.Name, maxNameLen},
		{"url", ev.URL, maxURLLen},
		{"referrer", ev.Referrer, maxURLLen},
		{"title", ev.Title, maxTitleLen},
		{"language", ev.Language, maxShortFieldLen},
		{"timezone", ev.Timezone, maxShortFieldLen},
		{"user_id", ev.UserID, maxShortFieldLen},
	} {
		if len(f.value) > f.max {
			return nil, invalid("%s is %d bytes long; the limit is %d", f.name, len(f.value), f.max)
		}
		if !utf8.ValidString(f.value) {
			return nil, invalid("%s is not valid UTF-8", f.name)
		}
	}
	switch typ {
	case aluminiv1.EventType_EVENT_TYPE_PAGEVIEW:
		if ev.URL == "" && !urlOptional {
			return nil, invalid("url is required for a pageview")
		}
	case aluminiv1.EventType_EVENT_TYPE_CUSTOM:
		if ev.Name == "" {
			return nil, invalid("name is required for a custom event")
		}
	}
	if ev.URL != "" {
		u, err := url.Parse(ev.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, invalid("url %q: want an absolute http or https URL", truncate(ev.URL))
		}
	}
	if ev.Timestamp != "" {
		ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp)
		if err != nil {
			return nil, invalid("timestamp %q: want RFC 3339, such as 2026-11-25T14:03:00Z", truncate(ev.Timestamp))
		}
		if ts.After(received.Add(maxClockSkew)) || ts.Before(received.Add(-maxEventAge)) {
			return nil, invalid("timestamp %s is more than %v ahead of or %v behind the server's clock", ev.Timestamp, maxClockSkew, maxEventAge)
		}
		hit.SentAtMs = ts.UnixMilli()
	}
	if ev.props != nil {
		hit.Properties = ev.props
	} else {
		props, err := properties(ev.Properties)
		if err != nil {
			return nil, err
		}
		hit.Properties = props
	}
	return hit, nil
}

// properties turns the JSON object into string pairs. Strings, numbers and
// booleans are accepted; nested objects are refused rather than flattened,
// because clients choose exactly what they send.
func properties(in map[string]any) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > maxProperties {
		return nil, invalid("properties has %d entries; the limit is %d", len(in), maxProperties)
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		s, keep, err := property(k, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out[k] = s
		}
	}
	return out, nil
}

// property checks one property; keep is false for null values, which are
// left out.
func property(k string, v any) (s string, keep bool, err error) {
	if k == "" || len(k) > maxPropertyKeyLen || !utf8.ValidString(k) {
		return "", false, invalid("property name %q: want 1-%d bytes of UTF-8", truncate(k), maxPropertyKeyLen)
	}
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	case nil:
		return "", false, nil
	default:
		return "", false, invalid("property %q: want a string, number or boolean", k)
	}
	if !utf8.ValidString(s) {
		return "", false, invalid("property %q is not valid UTF-8", k)
	}
	if len(s) > maxPropertyValLen {
		return "", false, invalid("property %q is %d bytes long; the limit is %d", k, len(s), maxPropertyValLen)
	}
	return s, true, nil
}

// truncate keeps error messages short when echoing bad input.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
