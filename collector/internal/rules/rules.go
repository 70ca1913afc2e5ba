// Package rules reads the collector's own per-client settings (exclusion
// rules, rate limits, server-side keys) from a YAML file kept beside the
// client registry, and reloads it when it changes.
//
// These settings live here rather than in the shared registry because only
// the collector uses them; their names match the registry's example file so
// that they can move there unchanged.
package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/aluminiapp/pipeline/collector/internal/clientip"
	"github.com/aluminiapp/pipeline/lib/registry"
)

// document is the YAML file: settings by client id.
type document struct {
	Clients map[string]clientDoc `yaml:"clients"`
}

type clientDoc struct {
	// Events per second accepted for the client; 0 uses the collector's
	// default (-client-rate-limit).
	RateLimitPerSecond float64 `yaml:"rate_limit_per_second"`
	// Largest burst of events; 0 uses the collector's default.
	RateLimitBurst int `yaml:"rate_limit_burst"`
	Exclude        struct {
		IPRanges  []string `yaml:"ip_ranges"`
		Hostnames []string `yaml:"hostnames"`
		Paths     []string `yaml:"paths"`
	} `yaml:"exclude"`
	// ServerKeyHashes are registry.HashAPIKey of secret keys that server-side
	// senders use as their Segment write key; only such senders may set the
	// visitor's IP (context.ip).
	ServerKeyHashes []string `yaml:"server_key_hashes"`
}

// Client is one client's compiled settings. The zero Client excludes
// nothing and uses the default rate limit.
type Client struct {
	ID                 string
	RateLimitPerSecond float64
	RateLimitBurst     int
	ipRanges           []netip.Prefix
	hostnames          []string // exact names, or ".example.com" for every subdomain
	exactPaths         map[string]bool
	pathPrefixes       []string
}

// Excluded reports the rule that leaves a hit out: "ip", "hostname", "path",
// or "" when none does. host and path come from the hit's page URL.
func (c *Client) Excluded(ip netip.Addr, host, path string) string {
	if c == nil {
		return ""
	}
	if ip.IsValid() {
		ip = ip.Unmap()
		for _, p := range c.ipRanges {
			if p.Contains(ip) {
				return "ip"
			}
		}
	}
	host = strings.ToLower(host)
	for _, h := range c.hostnames {
		if host == h || (h[0] == '.' && strings.HasSuffix(host, h)) {
			return "hostname"
		}
	}
	if c.exactPaths[path] {
		return "path"
	}
	for _, p := range c.pathPrefixes {
		if strings.HasPrefix(path, p) {
			return "path"
		}
	}
	return ""
}

type index struct {
	byID        map[string]*Client
	byServerKey map[string]*Client
}

// Set is the current version of the rules file. The zero Set (and a Set
// without a file) has no rules.
type Set struct {
	path    string
	raw     []byte
	current atomic.Pointer[index]
}

// Open reads the rules at path; an empty path gives an empty Set.
func Open(path string) (*Set, error) {
	s := &Set{path: path}
	s.current.Store(&index{})
	if path == "" {
		return s, nil
	}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Parse validates and compiles a rules document.
func Parse(data []byte) (map[string]*Client, error) {
	ix, err := parse(data)
	if err != nil {
		return nil, err
	}
	return ix.byID, nil
}

func parse(data []byte) (*index, error) {
	var doc document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt rule must fail loudly, not be ignored.
	// An empty file (io.EOF) means no rules.
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	ix := &index{byID: make(map[string]*Client), byServerKey: make(map[string]*Client)}
	for id, d := range doc.Clients {
		c := &Client{ID: id, RateLimitPerSecond: d.RateLimitPerSecond, RateLimitBurst: d.RateLimitBurst, exactPaths: make(map[string]bool)}
		if d.RateLimitPerSecond < 0 || d.RateLimitBurst < 0 {
			return nil, fmt.Errorf("client %s: rate_limit_per_second and rate_limit_burst must not be negative", id)
		}
		for _, r := range d.Exclude.IPRanges {
			p, err := clientip.ParsePrefix(strings.TrimSpace(r))
			if err != nil {
				return nil, fmt.Errorf("client %s: exclude.ip_ranges: %q: want a CIDR or an address: %w", id, r, err)
			}
			c.ipRanges = append(c.ipRanges, p)
		}
		for _, h := range d.Exclude.Hostnames {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" || strings.ContainsAny(h, "/: ") {
				return nil, fmt.Errorf("client %s: exclude.hostnames: %q: want a host name, or *.example.com for every subdomain", id, h)
			}
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				h = "." + rest
			}
			c.hostnames = append(c.hostnames, h)
		}
		for _, p := range d.Exclude.Paths {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("client %s: exclude.paths: %q: want a path starting with /, ending in * to match a prefix", id, p)
			}
			if prefix, ok := strings.CutSuffix(p, "*"); ok {
				c.pathPrefixes = append(c.pathPrefixes, prefix)
			} else {
				c.exactPaths[p] = true
			}
		}
		for _, h := range d.ServerKeyHashes {
			if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
				return nil, fmt.Errorf("client %s: server key hash %q: want sha256:<64 hex digits> (store the hash, never the key)", id, h)
			}
			if other, dup := ix.byServerKey[h]; dup {
				return nil, fmt.Errorf("a server key of client %s is also one of client %s", id, other.ID)
			}
			ix.byServerKey[h] = c
		}
		ix.byID[id] = c
	}
	return ix, nil
}

func (s *Set) reload() (bool, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, fmt.Errorf("reading collector rules: %w", err)
	}
	if s.raw != nil && bytes.Equal(data, s.raw) {
		return false, nil
	}
	ix, err := parse(data)
	if err != nil {
		return false, fmt.Errorf("collector rules %s: %w", s.path, err)
	}
	s.raw = data
	s.current.Store(ix)
	return true, nil
}

// Watch reloads the file every interval until ctx ends; a version that does
// not validate is logged and the last good one stays in force.
func (s *Set) Watch(ctx context.Context, interval time.Duration, log *zap.Logger) {
	if s.path == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := s.reload()
			switch {
			case err != nil:
				log.Error("collector rules not reloaded; keeping the previous version", zap.Error(err))
			case changed:
				log.Info("collector rules reloaded", zap.String("path", s.path))
			}
		}
	}
}

// For returns the rules of a client, nil when it has none.
func (s *Set) For(clientID string) *Client {
	return s.current.Load().byID[clientID]
}

// ServerKey returns the id of the client owning a secret server key.
func (s *Set) ServerKey(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	c, ok := s.current.Load().byServerKey[registry.HashAPIKey(key)]
	if !ok {
		return "", false
	}
	return c.ID, true
}
