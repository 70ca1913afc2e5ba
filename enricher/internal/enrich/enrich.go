// Package enrich turns a raw hit into the event analysts and reports rely
// on, and drops the visitor's IP address on the way.
package enrich

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// ErrUnknownClient means the hit names a client the registry does not know
// (it was removed after the collector accepted the hit).
var ErrUnknownClient = errors.New("unknown client")

// Enricher holds what enrichment needs; it is safe for concurrent use.
type Enricher struct {
	clients  registry.Registry
	visitors *visitor.Hasher
}

// New returns an Enricher.
func New(clients registry.Registry, visitors *visitor.Hasher) *Enricher {
	return &Enricher{clients: clients, visitors: visitors}
}

// Enrich builds the event for hit. The result holds no IP address.
func (e *Enricher) Enrich(hit *aluminiv1.RawHit) (*aluminiv1.Event, error) {
	client, err := e.clients.ByID(hit.ClientId)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownClient, hit.ClientId)
	}
	ev := &aluminiv1.Event{
		ClientId:     hit.ClientId,
		EventId:      hit.EventId,
		Type:         hit.Type,
		Name:         hit.Name,
		TimestampMs:  hit.ReceivedAtMs,
		ReceivedAtMs: hit.ReceivedAtMs,
		Url:          hit.Url,
		Title:        hit.Title,
		Referrer:     hit.Referrer,
		Language:     hit.Language,
		ScreenWidth:  hit.ScreenWidth,
		ScreenHeight: hit.ScreenHeight,
		Timezone:     hit.Timezone,
		Properties:   hit.Properties,
		UserId:       hit.UserId,
	}
	// The collector only forwards client times within its clock-skew bounds.
	if hit.SentAtMs != 0 {
		ev.TimestampMs = hit.SentAtMs
	}
	page, _ := url.Parse(hit.Url) // validated by the collector; a nil page leaves URL fields empty.
	if page != nil {
		ev.Hostname = strings.ToLower(page.Hostname())
		ev.Path = page.EscapedPath()
		if ev.Path == "" {
			ev.Path = "/"
		}
		q := page.Query()
		ev.UtmSource, ev.UtmMedium, ev.UtmCampaign = q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign")
		ev.UtmTerm, ev.UtmContent = q.Get("utm_term"), q.Get("utm_content")
	}
	ev.ReferrerSource, ev.ReferrerMedium = classifyReferrer(hit.Referrer, ev.Hostname, client.Domains)

	if client.CookieMode == registry.CookieModeCookie && hit.CookieId != "" {
		ev.VisitorId = e.visitors.Cookie(client.ID, hit.CookieId)
	} else {
		ev.VisitorId = e.visitors.Cookieless(client.ID, hit.Ip, hit.UserAgent, time.UnixMilli(hit.ReceivedAtMs))
	}
	return ev, nil
}

// classifyReferrer is the first cut of referrer attribution: direct,
// internal (the site itself or one of the client's domains) or an external
// host reported as the source with an unknown medium.
func classifyReferrer(referrer, pageHost string, domains []string) (source, medium string) {
	if referrer == "" {
		return "", "direct"
	}
	u, err := url.Parse(referrer)
	if err != nil || u.Hostname() == "" {
		return "", "unknown"
	}
	host := strings.ToLower(u.Hostname())
	if host == pageHost || ownDomain(host, domains) {
		return "", "internal"
	}
	return strings.TrimPrefix(host, "www."), "unknown"
}

func ownDomain(host string, domains []string) bool {
	for _, d := range domains {
		d = strings.ToLower(d)
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}
