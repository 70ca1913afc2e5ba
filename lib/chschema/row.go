package chschema

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Columns of the events table in the order Values returns them. ClickHouse
// 18.16 needs the explicit column list on INSERT.
var Columns = []string{
	"client_id", "event_id", "type", "name", "timestamp", "received_at",
	"url", "hostname", "path", "title", "referrer",
	"browser", "browser_version", "os", "os_version", "device_type", "is_bot",
	"referrer_source", "referrer_medium", "search_term",
	"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
	"country", "region", "city",
	"language", "screen_width", "screen_height", "timezone",
	"visitor_id", "session_id", "is_new_visitor", "previous_visit",
	"prop_keys", "prop_values", "user_id", "ip_truncated",
}

// InsertSQL is the statement batches of events are sent with.
var InsertSQL = "INSERT INTO events (" + strings.Join(Columns, ", ") + ")"

var eventTypes = map[aluminiv1.EventType]string{
	aluminiv1.EventType_EVENT_TYPE_UNSPECIFIED: "unspecified",
	aluminiv1.EventType_EVENT_TYPE_PAGEVIEW:    "pageview",
	aluminiv1.EventType_EVENT_TYPE_CUSTOM:      "custom",
	aluminiv1.EventType_EVENT_TYPE_IDENTIFY:    "identify",
}

var deviceTypes = map[aluminiv1.DeviceType]string{
	aluminiv1.DeviceType_DEVICE_TYPE_UNSPECIFIED: "unknown",
	aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP:     "desktop",
	aluminiv1.DeviceType_DEVICE_TYPE_MOBILE:      "mobile",
	aluminiv1.DeviceType_DEVICE_TYPE_TABLET:      "tablet",
	aluminiv1.DeviceType_DEVICE_TYPE_BOT:         "bot",
	aluminiv1.DeviceType_DEVICE_TYPE_OTHER:       "other",
}

// Values maps an enriched event onto the columns, in Columns order.
// Properties become two parallel arrays sorted by key, so the same event
// always yields the same row. Inserts of many rows use Block instead, which
// does not allocate per row.
func Values(ev *aluminiv1.Event) []any {
	var b Block
	b.Add(ev)
	cols := b.columns()
	row := make([]any, len(cols))
	for i, c := range cols {
		row[i] = first(c)
	}
	return row
}

// first is the only element of a one-row column slice.
func first(col any) any {
	switch c := col.(type) {
	case []string:
		return c[0]
	case []time.Time:
		return c[0]
	case []uint8:
		return c[0]
	case []uint16:
		return c[0]
	case []uint64:
		return c[0]
	case [][]string:
		if c[0] == nil {
			return []string{}
		}
		return c[0]
	}
	panic(fmt.Sprintf("schema: column of type %T", col))
}

func eventType(t aluminiv1.EventType) string {
	if s, ok := eventTypes[t]; ok {
		return s
	}
	return "unspecified"
}

func deviceType(d aluminiv1.DeviceType) string {
	if s, ok := deviceTypes[d]; ok {
		return s
	}
	return "unknown"
}

func millis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func boolean(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func clampUint16(v uint32) uint16 {
	if v > 65535 {
		return 65535
	}
	return uint16(v)
}

// ErrOutOfRange is returned by Check for a time a DateTime column cannot
// hold: it would be stored wrapped around, as a wrong date.
var ErrOutOfRange = errors.New("time outside DateTime's range 1970..2105")

// maxDateTimeMs is the start of 2106, where DateTime's uint32 seconds end.
const maxDateTimeMs = 4291747200_000

// ErrInvalidUTF8 is returned by Check for a string field that is not
// UTF-8, which proto3 strings must be. proto.Unmarshal refuses such a
// record; the sinker's faster decoder does not look, so Check does.
var ErrInvalidUTF8 = errors.New("string field is not valid UTF-8")

// Check reports whether ev fits the events table's columns and holds only
// UTF-8 strings.
func Check(ev *aluminiv1.Event) error {
	for _, f := range []struct {
		name string
		ms   int64
	}{{"timestamp", ev.TimestampMs}, {"received_at", ev.ReceivedAtMs}, {"previous_visit", ev.PreviousVisitMs}} {
		if f.ms < 0 || f.ms >= maxDateTimeMs {
			return fmt.Errorf("%s %d ms: %w", f.name, f.ms, ErrOutOfRange)
		}
	}
	for _, f := range [...]struct{ name, value string }{
		{"client_id", ev.ClientId}, {"event_id", ev.EventId}, {"name", ev.Name}, {"url", ev.Url},
		{"hostname", ev.Hostname}, {"path", ev.Path}, {"title", ev.Title}, {"referrer", ev.Referrer},
		{"browser", ev.Browser}, {"browser_version", ev.BrowserVersion}, {"os", ev.Os}, {"os_version", ev.OsVersion},
		{"referrer_source", ev.ReferrerSource}, {"referrer_medium", ev.ReferrerMedium}, {"search_term", ev.SearchTerm},
		{"utm_source", ev.UtmSource}, {"utm_medium", ev.UtmMedium}, {"utm_campaign", ev.UtmCampaign},
		{"utm_term", ev.UtmTerm}, {"utm_content", ev.UtmContent}, {"country", ev.Country}, {"region", ev.Region},
		{"city", ev.City}, {"language", ev.Language}, {"timezone", ev.Timezone}, {"user_id", ev.UserId},
		{"ip_truncated", ev.IpTruncated},
	} {
		if !utf8.ValidString(f.value) {
			return fmt.Errorf("%s: %w", f.name, ErrInvalidUTF8)
		}
	}
	for k, v := range ev.Properties {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("properties: %w", ErrInvalidUTF8)
		}
	}
	return nil
}
