// Package exclusion decides which hits a client asked not to collect (its
// staff's addresses, test hosts, admin pages), with matchers compiled from
// the client registry once per registry version.
package exclusion

import (
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// Matcher is one client's compiled exclusions. A nil Matcher excludes
// nothing.
type Matcher struct {
	ipRanges     []netip.Prefix
	hostnames    []string // exact names, or ".example.com" for every subdomain
	exactPaths   map[string]struct{}
	pathPrefixes []string
}

// Compile turns a client's exclusions into a Matcher; nil when there are
// none. Entries that do not parse are left out: registry.Client.Validate
// refuses them, with the same parsers, before a registry serves the client.
func Compile(e registry.Exclusions) *Matcher {
	if len(e.IPRanges) == 0 && len(e.Hostnames) == 0 && len(e.Paths) == 0 {
		return nil
	}
	m := &Matcher{}
	for _, r := range e.IPRanges {
		if p, err := registry.ParseIPRange(r); err == nil {
			m.ipRanges = append(m.ipRanges, p)
		}
	}
	for _, h := range e.Hostnames {
		if h, err := registry.ParseHostname(h); err == nil {
			m.hostnames = append(m.hostnames, h)
		}
	}
	for _, p := range e.Paths {
		if !strings.HasPrefix(p, "/") {
			continue
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			m.pathPrefixes = append(m.pathPrefixes, prefix)
			continue
		}
		if m.exactPaths == nil {
			m.exactPaths = make(map[string]struct{})
		}
		m.exactPaths[p] = struct{}{}
	}
	return m
}

// Excluded reports the rule that leaves a hit out: "ip", "hostname",
// "path", or "" when none does. pageURL is the hit's page; it is parsed
// only when the client excludes hostnames or paths.
func (m *Matcher) Excluded(ip netip.Addr, pageURL string) string {
	if m == nil {
		return ""
	}
	if ip.IsValid() {
		ip = ip.Unmap()
		for _, p := range m.ipRanges {
			if p.Contains(ip) {
				return "ip"
			}
		}
	}
	if pageURL == "" || (len(m.hostnames) == 0 && len(m.exactPaths) == 0 && len(m.pathPrefixes) == 0) {
		return ""
	}
	u, err := url.Parse(pageURL)
	if err != nil {
		return "" // intake refuses such URLs before this; nothing to match.
	}
	if len(m.hostnames) > 0 {
		host := strings.ToLower(u.Hostname())
		for _, h := range m.hostnames {
			if host == h || (h[0] == '.' && strings.HasSuffix(host, h)) {
				return "hostname"
			}
		}
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	if _, ok := m.exactPaths[path]; ok {
		return "path"
	}
	for _, p := range m.pathPrefixes {
		if strings.HasPrefix(path, p) {
			return "path"
		}
	}
	return ""
}

// Cache hands out each client's Matcher, compiling it on first use in a
// registry version; a new version starts afresh, so edits to the registry
// take effect with its reload and old clients are not kept alive.
type Cache struct {
	reg registry.Registry
	mu  sync.Mutex // serialises starting a generation; lookups take no lock
	cur atomic.Pointer[generation]
}

// generation is the matchers of one registry version. sync.Map suits it:
// keys are written once and then only read, by every request.
type generation struct {
	version uint64
	byCl    sync.Map // *registry.Client → *Matcher
}

// NewCache returns a Cache over reg.
func NewCache(reg registry.Registry) *Cache {
	return &Cache{reg: reg}
}

// For returns the Matcher of a client served by the registry (nil when it
// excludes nothing).
func (c *Cache) For(cl *registry.Client) *Matcher {
	v := c.reg.Version()
	g := c.cur.Load()
	if g == nil || g.version != v {
		c.mu.Lock()
		if g = c.cur.Load(); g == nil || g.version < v {
			g = &generation{version: v}
			c.cur.Store(g)
		}
		c.mu.Unlock()
		if g.version != v {
			// v was read before a reload that another request has cached
			// already: compile without caching rather than go back.
			return Compile(cl.Exclude)
		}
	}
	if m, ok := g.byCl.Load(cl); ok {
		return m.(*Matcher)
	}
	// A client looked up just before a reload may land in the new
	// generation: harmless, it is compiled from its own settings. Two
	// requests may compile the same client at once; one result is kept.
	m, _ := g.byCl.LoadOrStore(cl, Compile(cl.Exclude))
	return m.(*Matcher)
}
