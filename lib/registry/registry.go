// Package registry knows Alumini's clients (tenants): who they are, which
// keys identify them and what each one chose about privacy and limits.
package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Cookie modes a client can choose.
const (
	// CookieModeCookieless identifies visitors by a daily rotating hash of
	// IP and user agent; no cookie is set.
	CookieModeCookieless = "cookieless"
	// CookieModeCookie identifies visitors by a first-party cookie id.
	CookieModeCookie = "cookie"
)

// Client is one tenant. Write keys are public (they sit in web pages) and
// only identify the client to the collector; API keys are secret, grant read
// access to the client's reports, and are stored only as hashes.
type Client struct {
	ID      string   `yaml:"id"`
	Name    string   `yaml:"name"`
	Domains []string `yaml:"domains"`
	// WriteKeys identify the client to the collector, beside its id.
	WriteKeys []string `yaml:"write_keys"`
	// APIKeyHashes are HashAPIKey of each API key the reporter accepts.
	APIKeyHashes []string `yaml:"api_key_hashes"`
	// RespectDNT drops hits sent with Do Not Track or Global Privacy Control.
	RespectDNT bool   `yaml:"respect_dnt"`
	CookieMode string `yaml:"cookie_mode"`
	// RetentionDays is how long events are kept; 0 keeps them forever.
	RetentionDays int `yaml:"retention_days"`
	// TimeZone is the IANA zone reports use for days and hours; default UTC.
	TimeZone string `yaml:"time_zone"`
	// Bots says what happens to hits from bots and crawlers: "flag" keeps
	// them marked (reports leave them out by default), "drop" discards them.
	Bots string `yaml:"bots"`
	// KeepTruncatedIP stores the IP cut to /24 (IPv4) or /48 (IPv6) instead
	// of dropping it after geo lookup.
	KeepTruncatedIP bool `yaml:"keep_truncated_ip"`
	// RateLimitPerSecond caps the events the collector accepts for this
	// client per second; 0 means the collector's default.
	RateLimitPerSecond float64 `yaml:"rate_limit_per_second"`
	// RateLimitBurst is the most events the collector takes at once above
	// the rate; 0 means the collector's default. The collector raises it to
	// its batch size, or every full batch would be refused.
	RateLimitBurst int `yaml:"rate_limit_burst"`
	// ServerKeyHashes are HashAPIKey of secret keys that the client's own
	// servers send as their (Segment) write key. Only such authenticated
	// sends may set the visitor's IP address; a public write key cannot.
	ServerKeyHashes []string `yaml:"server_key_hashes"`
	// AllowedProperties, when not empty, is the only custom property names
	// kept; others are dropped at the collector.
	AllowedProperties []string `yaml:"allowed_properties"`
	// Exclude leaves out the client's own staff and test traffic.
	Exclude Exclusions `yaml:"exclude"`
	// ChildDirected marks a site directed at children: Alumini then keeps
	// counts only, nothing that identifies a person (no cookie, no
	// visitor or session tied to a person, no user id, no place finer
	// than the country, no custom property that is not allow-listed).
	ChildDirected bool `yaml:"child_directed"`
	// UmamiWebsiteIDs are the website ids of Umami's trackers whose events
	// (POST /api/send, payload.website) are this client's: a site moving
	// from Umami keeps its snippet and changes only the host.
	UmamiWebsiteIDs []string `yaml:"umami_website_ids"`
}

// Exclusions are hits the client does not want collected.
type Exclusions struct {
	// IPRanges in CIDR notation (203.0.113.0/24, 2001:db8::/32), or single
	// addresses (198.51.100.7).
	IPRanges []string `yaml:"ip_ranges"`
	// Hostnames of pages (staging.example.com), case-insensitive;
	// *.example.com matches every subdomain of example.com but not
	// example.com itself.
	Hostnames []string `yaml:"hostnames"`
	// Paths of pages, exact or ending in * for a prefix (/admin/*).
	Paths []string `yaml:"paths"`
}

// Bot handling choices.
const (
	BotsFlag = "flag"
	BotsDrop = "drop"
)

// ErrNotFound is returned when no client matches an id or key.
var ErrNotFound = errors.New("client not found")

// ErrAmbiguous is returned by ByDomain for a domain more than one client
// lists: events naming only the domain cannot be filed under either.
var ErrAmbiguous = errors.New("more than one client lists this domain")

// Registry looks clients up. The YAML file implementation is the default;
// a database-backed one can replace it behind this interface.
//
// Clients are immutable: a change to the registry makes new *Client values
// and a new Version, so callers may cache what they derive from a client
// (compiled matchers, say) per version.
type Registry interface {
	ByID(id string) (*Client, error)
	ByWriteKey(key string) (*Client, error)
	ByAPIKey(key string) (*Client, error)
	// ByServerKey returns the client owning a secret server key.
	ByServerKey(key string) (*Client, error)
	// ByDomain returns the one client whose domains list a host name
	// (Plausible's payload names its site so); ErrAmbiguous when several do.
	ByDomain(domain string) (*Client, error)
	// ByUmamiWebsite returns the client of an Umami website id.
	ByUmamiWebsite(id string) (*Client, error)
	// Version changes whenever the set of clients changes.
	Version() uint64
}

// APIKeyPrefix starts every API key, so leaked keys are easy to scan for.
const APIKeyPrefix = "alm_"

// NewAPIKey returns a fresh random API key (190 bits of entropy).
func NewAPIKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return APIKeyPrefix + hex.EncodeToString(b), nil
}

// HashAPIKey is the form in which an API key is stored. API keys are long
// random strings, not passwords, so a fast unsalted hash is enough to make a
// leaked registry useless for reading reports (as with GitHub's tokens); a
// slow password hash would only slow every API request down.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

var (
	idPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	hashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Validate reports what is wrong with one client's settings.
func (c *Client) Validate() error {
	if !idPattern.MatchString(c.ID) {
		return fmt.Errorf("client id %q: want 1-64 lowercase letters, digits, '-' or '_'", c.ID)
	}
	for _, h := range c.APIKeyHashes {
		if !hashPattern.MatchString(h) {
			return fmt.Errorf("client %s: api key hash %q: want sha256:<64 hex digits> (store HashAPIKey of the key, never the key)", c.ID, h)
		}
	}
	for _, h := range c.ServerKeyHashes {
		if !hashPattern.MatchString(h) {
			return fmt.Errorf("client %s: server key hash %q: want sha256:<64 hex digits> (store HashAPIKey of the key, never the key)", c.ID, h)
		}
	}
	for _, k := range c.WriteKeys {
		if strings.TrimSpace(k) == "" || len(k) > 128 {
			return fmt.Errorf("client %s: write keys must be 1-128 characters", c.ID)
		}
	}
	switch c.CookieMode {
	case CookieModeCookieless, CookieModeCookie:
	default:
		return fmt.Errorf("client %s: cookie_mode %q: want %q or %q", c.ID, c.CookieMode, CookieModeCookieless, CookieModeCookie)
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("client %s: time_zone %q: want an IANA zone such as Europe/Berlin", c.ID, c.TimeZone)
	}
	if c.Bots != BotsFlag && c.Bots != BotsDrop {
		return fmt.Errorf("client %s: bots %q: want %q or %q", c.ID, c.Bots, BotsFlag, BotsDrop)
	}
	if c.ChildDirected && c.CookieMode == CookieModeCookie {
		return fmt.Errorf("client %s: child_directed sets no cookie: want cookie_mode %q", c.ID, CookieModeCookieless)
	}
	if c.ChildDirected && c.KeepTruncatedIP {
		return fmt.Errorf("client %s: child_directed keeps no place finer than the country: want keep_truncated_ip false", c.ID)
	}
	if c.RateLimitPerSecond < 0 || c.RateLimitBurst < 0 {
		return fmt.Errorf("client %s: rate_limit_per_second and rate_limit_burst must not be negative", c.ID)
	}
	for _, r := range c.Exclude.IPRanges {
		if _, err := ParseIPRange(r); err != nil {
			return fmt.Errorf("client %s: exclude.ip_ranges %q: want CIDR notation such as 203.0.113.0/24, or one address", c.ID, r)
		}
	}
	for _, h := range c.Exclude.Hostnames {
		if _, err := ParseHostname(h); err != nil {
			return fmt.Errorf("client %s: exclude.hostnames %q: %w", c.ID, h, err)
		}
	}
	for _, p := range c.Exclude.Paths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("client %s: exclude.paths %q: want a path starting with /, ending in * to match a prefix", c.ID, p)
		}
	}
	if c.RetentionDays < 0 {
		return fmt.Errorf("client %s: retention_days must not be negative", c.ID)
	}
	for _, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, "/: ") {
			return fmt.Errorf("client %s: domain %q: want a bare host name such as example.com", c.ID, d)
		}
	}
	for _, w := range c.UmamiWebsiteIDs {
		if strings.TrimSpace(w) == "" || len(w) > 128 {
			return fmt.Errorf("client %s: umami_website_ids: each must be 1-128 characters", c.ID)
		}
	}
	return nil
}

// ParseIPRange reads an IP range (exclusion rules, the collector's trusted
// proxies): a CIDR prefix, or one address (a prefix of its full length).
// IPv4-mapped IPv6 addresses become IPv4.
func ParseIPRange(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseHostname reads an exclusion host name, lowercased. A name given as
// *.example.com comes back as ".example.com": a suffix that every
// subdomain of example.com ends in and example.com itself does not.
func ParseHostname(h string) (string, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h = "." + rest
	}
	if h == "" || h == "." || strings.ContainsAny(h, "/:* ") {
		return "", errors.New("want a host name, or *.example.com for every subdomain")
	}
	return h, nil
}

// index is an immutable lookup table built from one version of the file.
type index struct {
	version     uint64
	clients     []Client
	byID        map[string]*Client
	byWriteKey  map[string]*Client
	byAPIHash   map[string]*Client
	byServerKey map[string]*Client
	// byDomain maps a lowercased domain to its client, or to nil when
	// several clients list it.
	byDomain map[string]*Client
	byUmami  map[string]*Client
}

func newIndex(clients []Client) (*index, error) {
	ix := &index{
		byID:        make(map[string]*Client, len(clients)),
		byWriteKey:  make(map[string]*Client),
		byAPIHash:   make(map[string]*Client),
		byServerKey: make(map[string]*Client),
		byDomain:    make(map[string]*Client),
		byUmami:     make(map[string]*Client),
		clients:     clients,
	}
	for i := range clients {
		c := &clients[i]
		if c.CookieMode == "" {
			c.CookieMode = CookieModeCookieless
		}
		if c.TimeZone == "" {
			c.TimeZone = "UTC"
		}
		if c.Bots == "" {
			c.Bots = BotsFlag
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if _, dup := ix.byID[c.ID]; dup {
			return nil, fmt.Errorf("client id %q appears twice", c.ID)
		}
		ix.byID[c.ID] = c
		for _, k := range c.WriteKeys {
			if other, dup := ix.byWriteKey[k]; dup {
				return nil, fmt.Errorf("write key of client %s is also a write key of client %s", c.ID, other.ID)
			}
			ix.byWriteKey[k] = c
		}
		for _, h := range c.APIKeyHashes {
			if other, dup := ix.byAPIHash[h]; dup {
				return nil, fmt.Errorf("an api key of client %s is also an api key of client %s", c.ID, other.ID)
			}
			ix.byAPIHash[h] = c
		}
		for _, h := range c.ServerKeyHashes {
			if other, dup := ix.byServerKey[h]; dup {
				return nil, fmt.Errorf("a server key of client %s is also a server key of client %s", c.ID, other.ID)
			}
			ix.byServerKey[h] = c
		}
		for _, w := range c.UmamiWebsiteIDs {
			if other, dup := ix.byUmami[w]; dup {
				return nil, fmt.Errorf("umami website id %s of client %s is also one of client %s", w, c.ID, other.ID)
			}
			ix.byUmami[w] = c
		}
		// Two clients may share a domain (a site and its child-directed
		// section): only a lookup by domain alone is then ambiguous.
		for _, d := range c.Domains {
			d = strings.ToLower(d)
			if other, dup := ix.byDomain[d]; dup && other != c {
				ix.byDomain[d] = nil
			} else if !dup {
				ix.byDomain[d] = c
			}
		}
	}
	// A secret is one kind of credential only: a server key that is also
	// an API key would let a sender's key read reports, and the reverse.
	for h, c := range ix.byServerKey {
		if other, dup := ix.byAPIHash[h]; dup {
			return nil, fmt.Errorf("a server key of client %s is also an api key of client %s", c.ID, other.ID)
		}
	}
	return ix, nil
}
