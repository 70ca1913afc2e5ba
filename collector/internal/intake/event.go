package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
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
	// instead of Properties, and encoded from there (hit.Properties stays
	// nil).
	props []prop
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
// field. Strings are copied out into the request's arena before a parser
// goes back to the pool.
var parsers fastjson.ParserPool

// slot is one native event on its way to Kafka. A request allocates the
// slots of all its events at once.
type slot struct {
	p       pending
	hit     aluminiv1.RawHit
	consent aluminiv1.Consent
}

// decodeEvent and decodeBatch hand the events of a body to sink as they
// are parsed: first their number (an upper bound for NDJSON), then each
// event in turn, valid only during the call (its strings live in the
// arena). A concrete type, not an interface, so that the event stays on
// the stack.
func decodeEvent(body []byte, a *arena, sink *nativeHits) error {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		if bytes.Contains([]byte(err.Error()), []byte("unexpected tail")) {
			return invalid("malformed JSON: more than one value in the body (use /api/batch for many events)")
		}
		return invalid("malformed JSON: %v", err)
	}
	var ev eventJSON
	if err := fillEvent(&ev, v, a); err != nil {
		return err
	}
	sink.start(1)
	return sink.add(0, &ev)
}

// decodeBatch reads a JSON array of events or newline-delimited JSON (one
// event per line, blank lines allowed). Errors name the event's index, so a
// sender can find the bad one in a batch of hundreds.
func decodeBatch(body []byte, maxEvents int, a *arena, sink *nativeHits) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "[]" {
		return invalid("empty batch: send a JSON array or newline-delimited JSON objects")
	}
	p := parsers.Get()
	defer parsers.Put(p)
	var ev eventJSON // one at a time: only the hits are kept
	if trimmed[0] == '[' {
		v, err := p.ParseBytes(trimmed)
		if err != nil {
			return invalid("malformed JSON: %v", err)
		}
		arr, err := v.Array()
		if err != nil {
			return invalid("malformed JSON: %v", err)
		}
		if len(arr) > maxEvents {
			return invalid("batch holds more than %d events; the limit is %d", maxEvents, maxEvents)
		}
		if len(arr) == 0 {
			return invalid("empty batch: send a JSON array or newline-delimited JSON objects")
		}
		sink.start(len(arr))
		for i, item := range arr {
			ev = eventJSON{}
			if err := fillEvent(&ev, item, a); err != nil {
				return invalid("event %d: %v", i, err)
			}
			if err := sink.add(i, &ev); err != nil {
				return err
			}
		}
		return nil
	}
	// NDJSON: a JSON text never holds a raw newline inside a string, so
	// splitting on newlines is exact. Lines bound the events from above.
	sink.start(min(bytes.Count(trimmed, []byte{'\n'})+1, maxEvents))
	n := 0
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
		if n == maxEvents {
			return invalid("batch holds more than %d events; the limit is %d", maxEvents, maxEvents)
		}
		v, err := p.ParseBytes(line)
		if err != nil {
			return invalid("event %d: malformed JSON: %v", n, err)
		}
		ev = eventJSON{}
		if err := fillEvent(&ev, v, a); err != nil {
			return invalid("event %d: %v", n, err)
		}
		if err := sink.add(n, &ev); err != nil {
			return err
		}
		n++
	}
	return nil
}

// eventFields are the native event's JSON fields; a field's index is its
// bit in fillEvent's set of fields seen.
var eventFields = [...]string{"client_id", "write_key", "event_id", "type", "name", "url", "referrer", "title",
	"language", "timezone", "timestamp", "user_id", "screen_width", "screen_height", "dnt", "gpc", "properties"}

// duplicateField refuses a name an object holds twice: fastjson, like
// encoding/json, would keep the last one, and a second client_id could
// file the event under another client.
func duplicateField(k []byte) error {
	return invalid("malformed JSON: field %q appears twice in one object", truncate(string(k)))
}

// fillEvent copies one parsed event out of the parser into ev, its strings
// into a. Unknown fields are refused, as are values of the wrong JSON type
// and fields given twice.
func fillEvent(ev *eventJSON, v *fastjson.Value, a *arena) error {
	obj, err := v.Object()
	if err != nil {
		return invalid("malformed JSON: want an object, got %s", v.Type())
	}
	var seen uint32
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		for i, f := range eventFields {
			if f == string(k) {
				if seen&(1<<i) != 0 {
					err = duplicateField(k)
					return
				}
				seen |= 1 << i
				break
			}
		}
		switch string(k) {
		case "client_id":
			ev.ClientID, err = jsonString(k, v, a)
		case "write_key":
			ev.WriteKey, err = jsonString(k, v, a)
		case "event_id":
			ev.EventID, err = jsonString(k, v, a)
		case "type":
			ev.Type, err = jsonString(k, v, a)
		case "name":
			ev.Name, err = jsonString(k, v, a)
		case "url":
			ev.URL, err = jsonString(k, v, a)
		case "referrer":
			ev.Referrer, err = jsonString(k, v, a)
		case "title":
			ev.Title, err = jsonString(k, v, a)
		case "language":
			ev.Language, err = jsonString(k, v, a)
		case "timezone":
			ev.Timezone, err = jsonString(k, v, a)
		case "timestamp":
			ev.Timestamp, err = jsonString(k, v, a)
		case "user_id":
			ev.UserID, err = jsonString(k, v, a)
		case "screen_width":
			ev.ScreenWidth, err = jsonUint32(k, v)
		case "screen_height":
			ev.ScreenHeight, err = jsonUint32(k, v)
		case "dnt":
			ev.DNT, err = jsonBool(k, v)
		case "gpc":
			ev.GPC, err = jsonBool(k, v)
		case "properties":
			ev.props, err = jsonProperties(v, a)
		default:
			err = invalid("malformed JSON: unknown field %q", truncate(string(k)))
		}
	})
	return err
}

func jsonString(k []byte, v *fastjson.Value, a *arena) (string, error) {
	switch v.Type() {
	case fastjson.TypeNull:
		return "", nil
	case fastjson.TypeString:
		b, _ := v.StringBytes() // the type is string: no error.
		return a.str(b), nil
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

// jsonProperties checks the properties object as properties() does, and
// keeps them as a list of string pairs in the arena: no map, no boxed
// values (the batch path's largest allocations otherwise). A name given
// twice is refused.
func jsonProperties(v *fastjson.Value, a *arena) ([]prop, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	obj, err := v.Object()
	if err != nil {
		return nil, invalid("malformed JSON: properties: want an object, got %s", v.Type())
	}
	n := obj.Len()
	if n > maxProperties {
		return nil, invalid("properties has %d entries; the limit is %d", n, maxProperties)
	} else if n == 0 {
		return nil, nil
	}
	out := a.propSlice(n)
	n = 0
	var names [maxProperties][]byte // every name, null ones too, for the duplicate check
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		if len(k) == 0 || len(k) > maxPropertyKeyLen || !utf8.Valid(k) {
			err = invalid("property name %q: want 1-%d bytes of UTF-8", truncate(string(k)), maxPropertyKeyLen)
			return
		}
		for _, name := range names[:n] {
			if bytes.Equal(name, k) {
				err = invalid("malformed JSON: property %q appears twice", truncate(string(k)))
				return
			}
		}
		names[n] = k
		n++
		var s string
		switch v.Type() {
		case fastjson.TypeString:
			b, _ := v.StringBytes() // the type is string: no error.
			if !utf8.Valid(b) {
				err = invalid("property %q is not valid UTF-8", k)
				return
			}
			if len(b) > maxPropertyValLen {
				err = invalid("property %q is %d bytes long; the limit is %d", k, len(b), maxPropertyValLen)
				return
			}
			s = a.str(b)
		case fastjson.TypeNumber:
			if s = a.number(v); len(s) > maxPropertyValLen { // kept as sent
				err = invalid("property %q is %d bytes long; the limit is %d", k, len(s), maxPropertyValLen)
				return
			}
		case fastjson.TypeTrue:
			s = "true"
		case fastjson.TypeFalse:
			s = "false"
		case fastjson.TypeNull:
			return // left out, as properties() does
		default:
			err = invalid("property %q: want a string, number or boolean", k)
			return
		}
		out = append(out, prop{key: a.str(k), value: s})
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
	if ev.URL != "" && !validPageURL(ev.URL) {
		return nil, invalid("url %q: want an absolute http or https URL", truncate(ev.URL))
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
	props, err := properties(ev.Properties)
	if err != nil {
		return nil, err
	}
	hit.Properties = props
	return hit, nil
}

// validPageURL reports whether s is an absolute http or https URL with a
// host, which url.Parse parses. Most page URLs are plain ASCII with a plain
// host name; plainPageURL says yes to those without url.Parse's allocation,
// and everything else is asked of url.Parse.
func validPageURL(s string) bool {
	if plainPageURL(s) {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// plainPageURL reports whether s is http:// or https://, a host of
// letters, digits, '.' and '-' with an optional numeric port, then only
// characters that URLs allow unescaped and well-formed %XX escapes: a
// strict subset of what url.Parse accepts (TestPlainPageURLIsASubset).
func plainPageURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "http://"); !ok {
			return false
		}
	}
	i := 0
	for i < len(rest) && (isAlnum(rest[i]) || rest[i] == '.' || rest[i] == '-') {
		i++
	}
	if i == 0 {
		return false
	}
	if i < len(rest) && rest[i] == ':' {
		i++
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
	}
	if i < len(rest) && rest[i] != '/' && rest[i] != '?' && rest[i] != '#' {
		return false
	}
	for ; i < len(rest); i++ {
		c := rest[i]
		switch {
		case urlPlainByte[c]:
		case c == '%' && i+2 < len(rest) && isHex(rest[i+1]) && isHex(rest[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

// urlPlainByte marks the bytes a URL's path, query and fragment may hold
// unescaped.
var urlPlainByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c)) || strings.IndexByte("-._~!$&'()*+,;=:@/?#", byte(c)) >= 0
	}
	return t
}()

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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
