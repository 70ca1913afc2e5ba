// Package enrich turns a raw hit into the event analysts and reports rely
// on, and drops the visitor's IP address on the way.
package enrich

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aluminiapp/pipeline/enricher/internal/geo"
	"github.com/aluminiapp/pipeline/enricher/internal/referrer"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// ErrUnknownClient means the hit names a client the registry does not know
// (it was removed after the collector accepted the hit).
var ErrUnknownClient = errors.New("unknown client")

// ErrBot means the hit came from a bot and its client chose to drop bots.
var ErrBot = errors.New("bot traffic dropped by the client's setting")

// Config is what enrichment needs. Geo may be nil (no database supplied).
type Config struct {
	Clients    registry.Registry
	Visitors   *visitor.Hasher
	UserAgents *useragent.Parser
	Referrers  *referrer.Parser
	Geo        *geo.DB
	// Now is the clock for hits whose day's salt is gone; time.Now when nil.
	Now func() time.Time
}

// Enricher holds what enrichment needs; it is safe for concurrent use.
type Enricher struct {
	cfg Config
	// late counts hits that arrived after their day's salt was destroyed.
	late atomic.Uint64
}

// New returns an Enricher.
func New(cfg Config) *Enricher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Enricher{cfg: cfg}
}

// Late is the number of hits whose visitor id used the salt of the day they
// were processed on, because their own day's salt was already destroyed.
func (e *Enricher) Late() uint64 { return e.late.Load() }

// Enrich builds the event for hit. The result holds no IP address (except
// its /24 or /48 network, for clients that asked to keep that). Session
// fields are left to the session tracker, except for child-directed
// clients, whose events come with ids of their own (CountsOnly).
func (e *Enricher) Enrich(hit *aluminiv1.RawHit) (*aluminiv1.Event, error) {
	client, err := e.cfg.Clients.ByID(hit.ClientId)
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

	ua := e.cfg.UserAgents.Parse(hit.UserAgent, hit.ClientHints)
	ev.Browser, ev.BrowserVersion, ev.Os, ev.OsVersion = ua.Browser, ua.BrowserVersion, ua.OS, ua.OSVersion
	ev.DeviceType, ev.IsBot = ua.Device, ua.Bot
	if ua.Bot && client.Bots == registry.BotsDrop {
		return nil, ErrBot
	}

	var c campaign
	if page, _ := url.Parse(hit.Url); page != nil { // validated by the collector; nil leaves URL fields empty
		ev.Hostname = strings.ToLower(page.Hostname())
		ev.Path = page.EscapedPath()
		if ev.Path == "" {
			ev.Path = "/"
		}
		c = parseCampaign(page.RawQuery)
		ev.UtmSource, ev.UtmMedium, ev.UtmCampaign, ev.UtmTerm, ev.UtmContent = c.source, c.medium, c.name, c.term, c.content
	}
	a := e.attribute(hit.Referrer, ev.Hostname, client.Domains, c)
	ev.ReferrerSource, ev.ReferrerMedium, ev.SearchTerm = a.Source, a.Medium, a.Term

	loc := e.cfg.Geo.Lookup(hit.Ip)
	ev.Country, ev.Region, ev.City = loc.Country, loc.Region, loc.City
	if client.KeepTruncatedIP {
		ev.IpTruncated = geo.Truncate(hit.Ip)
	}
	if client.ChildDirected {
		keepCountsOnly(ev, client)
		return ev, nil
	}

	if client.CookieMode == registry.CookieModeCookie && hit.CookieId != "" {
		ev.VisitorId = e.cfg.Visitors.Cookie(client.ID, hit.CookieId)
	} else {
		at := time.UnixMilli(hit.ReceivedAtMs)
		id, err := e.cfg.Visitors.Cookieless(client.ID, hit.Ip, hit.UserAgent, at)
		if errors.Is(err, visitor.ErrSaltGone) {
			// The hit waited in Kafka past its day's grace period: its
			// day's ids can no longer be made, by design. Counting it
			// under today's salt keeps it; dropping would lose it.
			e.late.Add(1)
			id, err = e.cfg.Visitors.Cookieless(client.ID, hit.Ip, hit.UserAgent, e.cfg.Now())
		}
		if err != nil {
			return nil, fmt.Errorf("visitor id: %w", err)
		}
		ev.VisitorId = id
	}
	return ev, nil
}

// SessionSource is what starts a new session when it changes: the
// campaign, or else the external referrer source. Direct and internal
// traffic never starts one.
func SessionSource(ev *aluminiv1.Event) string {
	if ev.UtmSource != "" || ev.UtmCampaign != "" {
		return "utm:" + ev.UtmSource + "/" + ev.UtmCampaign
	}
	switch ev.ReferrerMedium {
	case referrer.Direct, referrer.Internal, "":
		return ""
	}
	return "ref:" + ev.ReferrerMedium + "/" + ev.ReferrerSource
}

// attribute finds source, medium and search term: the client's own domains
// are internal; campaign parameters and ad click ids on the page URL win
// over the referrer, since they say what the client paid or mailed for.
func (e *Enricher) attribute(ref, pageHost string, domains []string, c campaign) referrer.Attribution {
	var a referrer.Attribution
	u, err := url.Parse(ref)
	switch {
	case ref == "":
		a = referrer.Attribution{Medium: referrer.Direct}
	case err != nil:
		a = referrer.Attribution{Medium: referrer.Unknown}
	default:
		if host := strings.ToLower(u.Hostname()); host != "" && (host == pageHost || ownDomain(host, domains)) {
			a = referrer.Attribution{Medium: referrer.Internal}
		} else {
			a = e.cfg.Referrers.LookupURL(u)
		}
	}
	if c.clickSource != "" {
		a.Source, a.Medium = c.clickSource, referrer.Paid
	}
	if m := campaignMedium(c.medium); m != "" {
		a.Medium = m
		if c.source != "" {
			a.Source = c.source
		}
		if a.Medium != referrer.Search {
			a.Term = ""
		}
	}
	return a
}

// campaign is what the page URL's query says about how the visitor came.
type campaign struct {
	source, medium, name, term, content string
	// clickSource is the ad network whose click id the URL carries.
	clickSource string
}

// parseCampaign reads the campaign parameters in one pass over the query,
// unescaping only those: url.ParseQuery would build a map of every
// parameter for each hit. The first value of a parameter wins, as with
// url.Values.Get.
func parseCampaign(rawQuery string) campaign {
	var c campaign
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, value, _ := strings.Cut(pair, "=")
		var dst *string
		switch key {
		case "utm_source":
			dst = &c.source
		case "utm_medium":
			dst = &c.medium
		case "utm_campaign":
			dst = &c.name
		case "utm_term":
			dst = &c.term
		case "utm_content":
			dst = &c.content
		case "gclid", "gbraid", "wbraid":
			if value != "" && c.clickSource == "" {
				c.clickSource = "Google"
			}
			continue
		case "msclkid":
			if value != "" && c.clickSource == "" {
				c.clickSource = "Microsoft Advertising"
			}
			continue
		case "fbclid":
			if value != "" && c.clickSource == "" {
				c.clickSource = "Facebook"
			}
			continue
		default:
			continue
		}
		if *dst != "" {
			continue
		}
		if v, err := url.QueryUnescape(value); err == nil {
			// %ff unescapes to a byte that is not UTF-8, which the enriched
			// event's protobuf strings may not hold (FuzzParseCampaign).
			*dst = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return c
}

// campaignMedium maps the common utm_medium spellings to our mediums.
func campaignMedium(m string) string {
	switch strings.ToLower(strings.TrimSpace(m)) {
	case "":
		return ""
	case "email", "e-mail", "newsletter", "mail":
		return referrer.Email
	case "cpc", "ppc", "paid", "paidsearch", "paid_search", "paid-search", "cpm", "cpv", "cpa", "display", "banner", "retargeting", "paid_social", "paidsocial", "paid-social", "affiliate":
		return referrer.Paid
	case "social", "social-network", "social-media", "sm", "social_media":
		return referrer.Social
	case "organic", "search":
		return referrer.Search
	}
	return referrer.Unknown
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

// UACacheStats are the user-agent cache's hits and misses since start.
func (e *Enricher) UACacheStats() (hits, misses uint64) { return e.cfg.UserAgents.CacheStats() }
