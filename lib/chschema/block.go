package chschema

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Block holds a batch of events column by column, so an insert appends
// each column as one slice (driver.Batch.Column(i).Append) instead of a
// []any per row. Reset keeps the column buffers for the next batch: the
// insert path allocates only while batches grow.
type Block struct {
	clientID, eventID, typ, name                    []string
	timestamp, receivedAt, previousVisit            []time.Time
	url, hostname, path, title, referrer            []string
	browser, browserVersion, os, osVersion, device  []string
	isBot, isNew                                    []uint8
	refSource, refMedium, searchTerm                []string
	utmSource, utmMedium, utmCampaign, utmTerm, utm []string
	country, region, city, language, timezone       []string
	screenWidth, screenHeight                       []uint16
	visitorID, sessionID                            []uint64
	propKeys, propValues                            [][]string
	userID, ipTruncated                             []string
	// flat holds every property key and value of the block; the per-row
	// slices above point into it.
	flat []string
}

// Len is the number of events in the block.
func (b *Block) Len() int { return len(b.eventID) }

// Reset empties the block and keeps its buffers.
func (b *Block) Reset() {
	for _, c := range b.stringColumns() {
		*c = (*c)[:0]
	}
	b.timestamp, b.receivedAt, b.previousVisit = b.timestamp[:0], b.receivedAt[:0], b.previousVisit[:0]
	b.isBot, b.isNew = b.isBot[:0], b.isNew[:0]
	b.screenWidth, b.screenHeight = b.screenWidth[:0], b.screenHeight[:0]
	b.visitorID, b.sessionID = b.visitorID[:0], b.sessionID[:0]
	clear(b.propKeys) // drop references into old flat arrays
	clear(b.propValues)
	b.propKeys, b.propValues = b.propKeys[:0], b.propValues[:0]
	clear(b.flat)
	b.flat = b.flat[:0]
}

// Grow makes room for n more events, so that adding them does not grow
// (and copy) the 40 column slices one doubling at a time. Blocks come from
// a sync.Pool, which a garbage collection empties; with about one insert a
// second most batches start from a new, empty block.
func (b *Block) Grow(n int) {
	for _, c := range b.stringColumns() {
		*c = slices.Grow(*c, n)
	}
	b.timestamp, b.receivedAt, b.previousVisit = slices.Grow(b.timestamp, n), slices.Grow(b.receivedAt, n), slices.Grow(b.previousVisit, n)
	b.isBot, b.isNew = slices.Grow(b.isBot, n), slices.Grow(b.isNew, n)
	b.screenWidth, b.screenHeight = slices.Grow(b.screenWidth, n), slices.Grow(b.screenHeight, n)
	b.visitorID, b.sessionID = slices.Grow(b.visitorID, n), slices.Grow(b.sessionID, n)
	b.propKeys, b.propValues = slices.Grow(b.propKeys, n), slices.Grow(b.propValues, n)
}

func (b *Block) stringColumns() []*[]string {
	return []*[]string{&b.clientID, &b.eventID, &b.typ, &b.name, &b.url, &b.hostname, &b.path, &b.title, &b.referrer,
		&b.browser, &b.browserVersion, &b.os, &b.osVersion, &b.device, &b.refSource, &b.refMedium, &b.searchTerm,
		&b.utmSource, &b.utmMedium, &b.utmCampaign, &b.utmTerm, &b.utm, &b.country, &b.region, &b.city,
		&b.language, &b.timezone, &b.userID, &b.ipTruncated}
}

// Add appends one event. Properties become two parallel arrays sorted by
// key, so the same event always yields the same row.
func (b *Block) Add(ev *aluminiv1.Event) {
	b.clientID = append(b.clientID, ev.ClientId)
	b.eventID = append(b.eventID, ev.EventId)
	b.typ = append(b.typ, eventType(ev.Type))
	b.name = append(b.name, ev.Name)
	b.timestamp = append(b.timestamp, millis(ev.TimestampMs))
	b.receivedAt = append(b.receivedAt, millis(ev.ReceivedAtMs))
	b.url = append(b.url, ev.Url)
	b.hostname = append(b.hostname, ev.Hostname)
	b.path = append(b.path, ev.Path)
	b.title = append(b.title, ev.Title)
	b.referrer = append(b.referrer, ev.Referrer)
	b.browser = append(b.browser, ev.Browser)
	b.browserVersion = append(b.browserVersion, ev.BrowserVersion)
	b.os = append(b.os, ev.Os)
	b.osVersion = append(b.osVersion, ev.OsVersion)
	b.device = append(b.device, deviceType(ev.DeviceType))
	b.isBot = append(b.isBot, boolean(ev.IsBot))
	b.refSource = append(b.refSource, ev.ReferrerSource)
	b.refMedium = append(b.refMedium, ev.ReferrerMedium)
	b.searchTerm = append(b.searchTerm, ev.SearchTerm)
	b.utmSource = append(b.utmSource, ev.UtmSource)
	b.utmMedium = append(b.utmMedium, ev.UtmMedium)
	b.utmCampaign = append(b.utmCampaign, ev.UtmCampaign)
	b.utmTerm = append(b.utmTerm, ev.UtmTerm)
	b.utm = append(b.utm, ev.UtmContent)
	b.country = append(b.country, ev.Country)
	b.region = append(b.region, ev.Region)
	b.city = append(b.city, ev.City)
	b.language = append(b.language, ev.Language)
	b.screenWidth = append(b.screenWidth, clampUint16(ev.ScreenWidth))
	b.screenHeight = append(b.screenHeight, clampUint16(ev.ScreenHeight))
	b.timezone = append(b.timezone, ev.Timezone)
	b.visitorID = append(b.visitorID, ev.VisitorId)
	b.sessionID = append(b.sessionID, ev.SessionId)
	b.isNew = append(b.isNew, boolean(ev.IsNewVisitor))
	b.previousVisit = append(b.previousVisit, millis(ev.PreviousVisitMs))
	n := len(ev.Properties)
	if n == 0 {
		b.propKeys = append(b.propKeys, nil)
		b.propValues = append(b.propValues, nil)
	} else {
		start := len(b.flat)
		for k := range ev.Properties {
			b.flat = append(b.flat, k)
		}
		keys := b.flat[start : start+n : start+n]
		sort.Strings(keys)
		for _, k := range keys {
			b.flat = append(b.flat, ev.Properties[k])
		}
		// Re-slice after the appends: flat may have moved, and both slices
		// must point into the same (final for this row) array.
		b.propKeys = append(b.propKeys, b.flat[start:start+n:start+n])
		b.propValues = append(b.propValues, b.flat[start+n:start+2*n:start+2*n])
	}
	b.userID = append(b.userID, ev.UserId)
	b.ipTruncated = append(b.ipTruncated, ev.IpTruncated)
}

// columns returns the column slices in Columns order.
func (b *Block) columns() []any {
	return []any{
		b.clientID, b.eventID, b.typ, b.name, b.timestamp, b.receivedAt,
		b.url, b.hostname, b.path, b.title, b.referrer,
		b.browser, b.browserVersion, b.os, b.osVersion, b.device, b.isBot,
		b.refSource, b.refMedium, b.searchTerm,
		b.utmSource, b.utmMedium, b.utmCampaign, b.utmTerm, b.utm,
		b.country, b.region, b.city,
		b.language, b.screenWidth, b.screenHeight, b.timezone,
		b.visitorID, b.sessionID, b.isNew, b.previousVisit,
		b.propKeys, b.propValues, b.userID, b.ipTruncated,
	}
}

// AppendTo appends every column of the block to a batch prepared with
// InsertSQL.
func (b *Block) AppendTo(batch driver.Batch) error {
	return b.AppendRange(batch, 0, b.Len())
}

// AppendRange appends rows [from, to) of every column to a batch prepared
// with InsertSQL.
func (b *Block) AppendRange(batch driver.Batch, from, to int) error {
	for i, col := range b.columns() {
		if err := batch.Column(i).Append(rows(col, from, to)); err != nil {
			return fmt.Errorf("column %s: %w", Columns[i], err)
		}
	}
	return nil
}

// rows is col[from:to] for the column types a Block holds.
func rows(col any, from, to int) any {
	switch c := col.(type) {
	case []string:
		return c[from:to]
	case []time.Time:
		return c[from:to]
	case []uint8:
		return c[from:to]
	case []uint16:
		return c[from:to]
	case []uint64:
		return c[from:to]
	case [][]string:
		return c[from:to]
	}
	panic(fmt.Sprintf("schema: Block column of type %T", col))
}
