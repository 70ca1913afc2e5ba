package schema

import (
	"sort"
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
// always yields the same row.
func Values(ev *aluminiv1.Event) []any {
	keys := make([]string, 0, len(ev.Properties))
	for k := range ev.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = ev.Properties[k]
	}
	typ, ok := eventTypes[ev.Type]
	if !ok {
		typ = "unspecified"
	}
	dev, ok := deviceTypes[ev.DeviceType]
	if !ok {
		dev = "unknown"
	}
	return []any{
		ev.ClientId, ev.EventId, typ, ev.Name, millis(ev.TimestampMs), millis(ev.ReceivedAtMs),
		ev.Url, ev.Hostname, ev.Path, ev.Title, ev.Referrer,
		ev.Browser, ev.BrowserVersion, ev.Os, ev.OsVersion, dev, boolean(ev.IsBot),
		ev.ReferrerSource, ev.ReferrerMedium, ev.SearchTerm,
		ev.UtmSource, ev.UtmMedium, ev.UtmCampaign, ev.UtmTerm, ev.UtmContent,
		ev.Country, ev.Region, ev.City,
		ev.Language, clampUint16(ev.ScreenWidth), clampUint16(ev.ScreenHeight), ev.Timezone,
		ev.VisitorId, ev.SessionId, boolean(ev.IsNewVisitor), millis(ev.PreviousVisitMs),
		keys, vals, ev.UserId, ev.IpTruncated,
	}
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
