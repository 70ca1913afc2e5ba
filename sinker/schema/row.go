package schema

import (
	"errors"
	"fmt"
	"strings"
	"time"

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

// Check reports whether ev fits the events table's columns.
func Check(ev *aluminiv1.Event) error {
	for _, f := range []struct {
		name string
		ms   int64
	}{{"timestamp", ev.TimestampMs}, {"received_at", ev.ReceivedAtMs}, {"previous_visit", ev.PreviousVisitMs}} {
		if f.ms < 0 || f.ms >= maxDateTimeMs {
			return fmt.Errorf("%s %d ms: %w", f.name, f.ms, ErrOutOfRange)
		}
	}
	return nil
}
