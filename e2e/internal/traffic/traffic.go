// Package traffic makes realistic analytics traffic for the end-to-end
// benchmark: many visitors, user agents of real browsers with a long tail of
// ones never seen before, referrers of real sites, UTM-tagged landings and
// custom events, offered at a fixed rate whatever the answers' latency.
package traffic

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Corpus is the outside data traffic is drawn from.
type Corpus struct {
	UserAgents []string // real browsers, most common first
	Referrers  []string // absolute http(s) URLs of other sites
}

// LoadCorpus reads the user agents of a JSON array of {"userAgent": ...}
// (enricher/testdata/intoli-user-agents) and the referrers of a JSON array
// of {"uri": ...} (enricher/testdata/referer-parser).
func LoadCorpus(userAgents, referrers string) (*Corpus, error) {
	var uas []struct {
		UserAgent string `json:"userAgent"`
	}
	if err := readJSON(userAgents, &uas); err != nil {
		return nil, err
	}
	var refs []struct {
		URI string `json:"uri"`
	}
	if err := readJSON(referrers, &refs); err != nil {
		return nil, err
	}
	c := &Corpus{}
	for _, u := range uas {
		if u.UserAgent != "" {
			c.UserAgents = append(c.UserAgents, u.UserAgent)
		}
	}
	for _, r := range refs {
		// The collector takes absolute http(s) URLs of at most 2048 bytes.
		if u, err := url.Parse(r.URI); err == nil && (u.Scheme == "http" || u.Scheme == "https") && len(r.URI) <= 2048 {
			c.Referrers = append(c.Referrers, r.URI)
		}
	}
	if len(c.UserAgents) == 0 || len(c.Referrers) == 0 {
		return nil, fmt.Errorf("corpus: %d user agents in %s, %d referrers in %s; want some of each", len(c.UserAgents), userAgents, len(c.Referrers), referrers)
	}
	return c, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("corpus %s: %w", path, err)
	}
	return nil
}

// Config says what traffic to make.
type Config struct {
	Client   string  // client id of the events
	Site     string  // host name of the pages
	Visitors int     // returning visitors, each with its address and browser
	Unseen   float64 // share of requests from a new visitor whose user agent no one sent before
	Batch    int     // events per request: 1 posts to /api/event, more to /api/batch
	IDPrefix string  // event ids are IDPrefix and the event's sequence number
}

// Request is one POST to the collector: one visitor's events.
type Request struct {
	Path      string // /api/event or /api/batch
	Body      []byte
	UserAgent string
	IP        string // sent as X-Forwarded-For (the collector must trust the sender)
	FirstSeq  uint64 // the events' sequence numbers are FirstSeq to FirstSeq+Batch-1
}

type visitor struct{ ip, ua string }

// Generator makes requests; it is not safe for concurrent use: give each
// sender its own.
type Generator struct {
	cfg      Config
	corpus   *Corpus
	rng      *rand.Rand
	visitors []visitor
	seed     uint64
	fresh    uint64 // new visitors made so far
	pages    []string
	buf      []byte
}

// NewGenerator makes a generator; generators with the same seed make the
// same traffic.
func NewGenerator(cfg Config, corpus *Corpus, seed uint64) *Generator {
	g := &Generator{cfg: cfg, corpus: corpus, rng: rand.New(rand.NewPCG(seed, 2026)), seed: seed}
	// The same visitors for every generator: a returning visitor keeps
	// their address and browser whichever sender carries them. Browsers
	// are drawn with a Zipf law over the corpus: a few dominate, most are
	// rare, as in real traffic.
	vrng := rand.New(rand.NewPCG(1, 2026))
	vzipf := rand.NewZipf(vrng, 1.2, 1, uint64(len(corpus.UserAgents)-1))
	for i := range cfg.Visitors {
		g.visitors = append(g.visitors, visitor{ip: ipv4(uint32(i) + 1<<24), ua: corpus.UserAgents[vzipf.Uint64()]})
	}
	g.pages = []string{"/", "/pricing", "/docs", "/docs/install", "/docs/api", "/about", "/contact", "/signup", "/login", "/blog"}
	for i := range 200 {
		g.pages = append(g.pages, "/blog/post-"+strconv.Itoa(i), "/products/item-"+strconv.Itoa(i))
	}
	return g
}

// ipv4 is the dotted form of n, in 10.0.0.0/8 and above: addresses of
// visitors, which the enricher never stores.
func ipv4(n uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", 10+byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// event is a native event as the collector's /api/event takes it.
type event struct {
	ClientID   string            `json:"client_id"`
	EventID    string            `json:"event_id"`
	Type       string            `json:"type,omitempty"`
	Name       string            `json:"name,omitempty"`
	URL        string            `json:"url,omitempty"`
	Referrer   string            `json:"referrer,omitempty"`
	Title      string            `json:"title,omitempty"`
	Language   string            `json:"language,omitempty"`
	Screen     int               `json:"screen_width,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
}

// Next makes the request whose first event has sequence number seq.
func (g *Generator) Next(seq uint64) (Request, error) {
	v := g.visitor()
	site := "https://" + g.cfg.Site
	g.buf = g.buf[:0]
	if g.cfg.Batch > 1 {
		g.buf = append(g.buf, '[')
	}
	prev := ""
	for i := range g.cfg.Batch {
		e := event{ClientID: g.cfg.Client, EventID: g.cfg.IDPrefix + strconv.FormatUint(seq+uint64(i), 10),
			Language: "en-US", Screen: 1280}
		page := g.pages[g.rng.IntN(len(g.pages))]
		switch r := g.rng.IntN(100); {
		case i == 0 && r < 10:
			// A landing from a campaign.
			e.URL = site + page + "?utm_source=newsletter&utm_medium=email&utm_campaign=c" + strconv.Itoa(g.rng.IntN(20))
		case i == 0 && r < 50:
			e.URL = site + page
			e.Referrer = g.corpus.Referrers[g.rng.IntN(len(g.corpus.Referrers))]
		case i == 0:
			e.URL = site + page // direct
		case r < 5:
			e.Type, e.Name = "custom", "signup"
			e.Properties = map[string]string{"plan": "pro"}
		default:
			e.URL, e.Referrer = site+page, prev
		}
		if e.URL != "" {
			e.Title = "Page " + page
			prev = e.URL
		}
		if i > 0 {
			g.buf = append(g.buf, ',')
		}
		b, err := json.Marshal(e)
		if err != nil {
			return Request{}, fmt.Errorf("traffic: %w", err)
		}
		g.buf = append(g.buf, b...)
	}
	path := "/api/event"
	if g.cfg.Batch > 1 {
		g.buf = append(g.buf, ']')
		path = "/api/batch"
	}
	return Request{Path: path, Body: g.buf, UserAgent: v.ua, IP: v.ip, FirstSeq: seq}, nil
}

// visitor is a returning visitor, or, for a share Unseen of requests, a
// new one with a browser build no one has sent before.
func (g *Generator) visitor() visitor {
	if g.rng.Float64() >= g.cfg.Unseen {
		return g.visitors[g.rng.IntN(len(g.visitors))]
	}
	g.fresh++
	ua := g.corpus.UserAgents[g.rng.IntN(len(g.corpus.UserAgents))]
	// Numbered by generator and count: unique across the senders.
	return visitor{ip: ipv4(uint32(g.rng.Uint64N(1 << 24))), ua: unseen(ua, g.seed*1_000_000_000+g.fresh)}
}

// unseen makes ua a build never seen: the last dotted number of the first
// version after the platform's parentheses (Chrome/148.0.0.0, AppleWebKit/605.1.15)
// becomes n, or, without one, a build token is added.
func unseen(ua string, n uint64) string {
	from := strings.IndexByte(ua, ')') + 1
	slash := strings.IndexByte(ua[from:], '/')
	for slash >= 0 {
		slash += from
		rest := ua[slash+1:]
		end := strings.IndexAny(rest, " ;)")
		if end < 0 {
			end = len(rest)
		}
		if dot := strings.LastIndexByte(rest[:end], '.'); dot > 0 {
			return ua[:slash+1] + rest[:dot+1] + strconv.FormatUint(n, 10) + rest[end:]
		}
		from = slash + 1
		slash = strings.IndexByte(ua[from:], '/')
	}
	return ua + " Build/" + strconv.FormatUint(n, 10)
}
