package enrich

import (
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// keepCountsOnly strips an event of a child-directed client of everything
// that identifies a person (docs/enricher.md#child-directed-sites): no
// user id, no place finer than the country, no network, only allow-listed
// properties, and instead of a visitor and a visit, ids of the event
// itself. Each event then counts as one visitor and one visit of its own;
// no state is kept about anyone, so nothing links two events.
func keepCountsOnly(ev *aluminiv1.Event, client *registry.Client) {
	ev.UserId = ""
	ev.Region, ev.City, ev.IpTruncated = "", "", ""
	for k := range ev.Properties {
		if !slices.Contains(client.AllowedProperties, k) {
			delete(ev.Properties, k)
		}
	}
	// Derived from the event id, not random: a replayed hit gets the same
	// ids, so storage and the views count it once.
	id := xxhash.Sum64String(ev.ClientId + "\x00" + ev.EventId)
	if id == 0 {
		id = 1 // 0 would read as "no visit" (see CountsOnly)
	}
	ev.VisitorId, ev.SessionId = id, id
	ev.IsNewVisitor, ev.PreviousVisitMs = true, 0
}

// CountsOnly says whether Enrich made ev as a child-directed client's:
// only those events come with their session fields set; the session
// tracker fills them for every other event and must leave these alone.
func CountsOnly(ev *aluminiv1.Event) bool { return ev.SessionId != 0 }
