package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

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

func decodeEvent(body []byte) (*eventJSON, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var ev eventJSON
	if err := dec.Decode(&ev); err != nil {
		return nil, invalid("malformed JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid("malformed JSON: more than one value in the body (use /api/batch for many events)")
	}
	return &ev, nil
}

var eventTypes = map[string]aluminiv1.EventType{
	"":         aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
	"pageview": aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
	"custom":   aluminiv1.EventType_EVENT_TYPE_CUSTOM,
	"identify": aluminiv1.EventType_EVENT_TYPE_IDENTIFY,
}

// toRawHit validates ev and fills the client-sent part of a raw hit.
func (ev *eventJSON) toRawHit(received time.Time) (*aluminiv1.RawHit, error) {
	typ, ok := eventTypes[ev.Type]
	if !ok {
		return nil, invalid("type %q: want pageview, custom or identify", ev.Type)
	}
	hit := &aluminiv1.RawHit{
		EventId:      ev.EventID,
		Type:         typ,
		Name:         ev.Name,
		Url:          ev.URL,
		Referrer:     ev.Referrer,
		Title:        ev.Title,
		Language:     ev.Language,
		ScreenWidth:  ev.ScreenWidth,
		ScreenHeight: ev.ScreenHeight,
		Timezone:     ev.Timezone,
		UserId:       ev.UserID,
		Consent:      &aluminiv1.Consent{DoNotTrack: ev.DNT, GlobalPrivacyControl: ev.GPC},
	}
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
		if ev.URL == "" {
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
	props, err := properties(ev.Properties)
	if err != nil {
		return nil, err
	}
	hit.Properties = props
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
		if k == "" || len(k) > maxPropertyKeyLen || !utf8.ValidString(k) {
			return nil, invalid("property name %q: want 1-%d bytes of UTF-8", truncate(k), maxPropertyKeyLen)
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		case nil:
			continue
		default:
			return nil, invalid("property %q: want a string, number or boolean", k)
		}
		if len(s) > maxPropertyValLen {
			return nil, invalid("property %q is %d bytes long; the limit is %d", k, len(s), maxPropertyValLen)
		}
		out[k] = s
	}
	return out, nil
}

// truncate keeps error messages short when echoing bad input.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
