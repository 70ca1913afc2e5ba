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
	RateLimitPerSecond int `yaml:"rate_limit_per_second"`
	// AllowedProperties, when not empty, is the only custom property names
	// kept; others are dropped at the collector.
	AllowedProperties []string `yaml:"allowed_properties"`
	// Exclude leaves out the client's own staff and test traffic.
	Exclude Exclusions `yaml:"exclude"`
}

// Exclusions are hits the client does not want collected.
type Exclusions struct {
	// IPRanges in CIDR notation (203.0.113.0/24, 2001:db8::/32).
	IPRanges []string `yaml:"ip_ranges"`
	// Hostnames of pages (staging.example.com).
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

// Registry looks clients up. The YAML file implementation is the default;
// a database-backed one can replace it behind this interface.
type Registry interface {
	ByID(id string) (*Client, error)
	ByWriteKey(key string) (*Client, error)
	ByAPIKey(key string) (*Client, error)
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
	if c.RateLimitPerSecond < 0 {
		return fmt.Errorf("client %s: rate_limit_per_second must not be negative", c.ID)
	}
	for _, r := range c.Exclude.IPRanges {
		if _, err := netip.ParsePrefix(r); err != nil {
			return fmt.Errorf("client %s: exclude.ip_ranges %q: want CIDR notation such as 203.0.113.0/24", c.ID, r)
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
	return nil
}

// index is an immutable lookup table built from one version of the file.
type index struct {
	byID       map[string]*Client
	byWriteKey map[string]*Client
	byAPIHash  map[string]*Client
}

func newIndex(clients []Client) (*index, error) {
	ix := &index{
		byID:       make(map[string]*Client, len(clients)),
		byWriteKey: make(map[string]*Client),
		byAPIHash:  make(map[string]*Client),
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
	}
	return ix, nil
}
