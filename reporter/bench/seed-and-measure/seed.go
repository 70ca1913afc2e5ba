package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// clientID names the i-th seeded client; client 0 is the largest.
func clientID(i int) string { return fmt.Sprintf("c%02d", i) }

// quotas splits n events over the clients: the first gets share of them,
// the others a Zipf-like falling share of the rest, as real customer bases
// are a few big sites and a long tail of small ones.
func quotas(n, clients int, share float64) []int {
	out := make([]int, clients)
	out[0] = int(math.Round(float64(n) * share))
	var sum float64
	for i := 1; i < clients; i++ {
		sum += 1 / math.Pow(float64(i), 0.9)
	}
	left := n - out[0]
	given := 0
	for i := 1; i < clients; i++ {
		out[i] = int(float64(left) / math.Pow(float64(i), 0.9) / sum)
		given += out[i]
	}
	out[clients-1] += left - given // rounding: the total is exactly n.
	return out
}

// weighted is a value picked with a relative weight.
type weighted[T any] struct {
	w float64
	v T
}

// picker draws from a weighted list by binary search on cumulative weights.
type picker[T any] struct {
	cum  []float64
	vals []T
}

func newPicker[T any](items []weighted[T]) picker[T] {
	p := picker[T]{}
	var c float64
	for _, it := range items {
		c += it.w
		p.cum = append(p.cum, c)
		p.vals = append(p.vals, it.v)
	}
	return p
}

func (p picker[T]) pick(r *rand.Rand) T {
	x := r.Float64() * p.cum[len(p.cum)-1]
	lo, hi := 0, len(p.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if p.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return p.vals[lo]
}

type place struct{ country, region, city string }

type browser struct {
	name     string
	versions []string
}

type system struct{ name, version string }

type source struct{ referrer, source, medium string }

// The distributions roughly follow public web-analytics shares.
var (
	places = newPicker([]weighted[place]{
		{18, place{"US", "US-CA", "Los Angeles"}}, {9, place{"US", "US-NY", "New York"}}, {6, place{"US", "US-TX", "Austin"}},
		{9, place{"DE", "DE-BE", "Berlin"}}, {5, place{"DE", "DE-BY", "Munich"}}, {7, place{"GB", "GB-ENG", "London"}},
		{6, place{"FR", "FR-IDF", "Paris"}}, {5, place{"IN", "IN-KA", "Bengaluru"}}, {4, place{"BR", "BR-SP", "São Paulo"}},
		{4, place{"JP", "JP-13", "Tokyo"}}, {3, place{"CA", "CA-ON", "Toronto"}}, {3, place{"NL", "NL-NH", "Amsterdam"}},
		{3, place{"ES", "ES-MD", "Madrid"}}, {3, place{"IT", "IT-25", "Milan"}}, {2, place{"PL", "PL-14", "Warsaw"}},
		{2, place{"SE", "SE-AB", "Stockholm"}}, {2, place{"AU", "AU-NSW", "Sydney"}}, {2, place{"CH", "CH-ZH", "Zürich"}},
		{2, place{"AT", "AT-9", "Vienna"}}, {5, place{"", "", ""}},
	})
	browsers = newPicker([]weighted[browser]{
		{64, browser{"Chrome", []string{"120", "121", "122", "119"}}}, {18, browser{"Safari", []string{"17.2", "17.1", "16.6"}}},
		{6, browser{"Firefox", []string{"121", "122", "115"}}}, {5, browser{"Edge", []string{"120", "121"}}},
		{3, browser{"Samsung Internet", []string{"23.0"}}}, {2, browser{"Opera", []string{"106"}}}, {2, browser{"", []string{""}}},
	})
	devices = newPicker([]weighted[aluminiv1.DeviceType]{
		{55, aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP}, {40, aluminiv1.DeviceType_DEVICE_TYPE_MOBILE}, {5, aluminiv1.DeviceType_DEVICE_TYPE_TABLET},
	})
	desktopOS = newPicker([]weighted[system]{{60, system{"Windows", "10"}}, {15, system{"Windows", "11"}}, {17, system{"Mac", "14.2"}}, {6, system{"GNU/Linux", ""}}, {2, system{"Chrome OS", ""}}})
	mobileOS  = newPicker([]weighted[system]{{55, system{"Android", "14"}}, {15, system{"Android", "13"}}, {30, system{"iOS", "17.2"}}})
	tabletOS  = newPicker([]weighted[system]{{60, system{"iPadOS", "17.2"}}, {40, system{"Android", "13"}}})
	sources   = newPicker([]weighted[source]{
		{40, source{"", "", ""}}, {30, source{"https://www.google.com/", "Google", "search"}}, {4, source{"https://www.bing.com/", "Bing", "search"}},
		{2, source{"https://duckduckgo.com/", "DuckDuckGo", "search"}}, {5, source{"https://t.co/", "Twitter", "social"}},
		{4, source{"https://www.facebook.com/", "Facebook", "social"}}, {2, source{"https://www.linkedin.com/", "LinkedIn", "social"}},
		{2, source{"https://www.reddit.com/", "Reddit", "social"}}, {3, source{"https://news.ycombinator.com/", "Hacker News", "referral"}},
		{3, source{"https://github.com/", "GitHub", "referral"}}, {5, source{"https://partner.example/", "partner.example", "referral"}},
	})
	searchTerms = []string{"analytics", "privacy analytics", "web stats", "cookie free analytics", "gdpr analytics", "site traffic", "visitor counter", "open source analytics"}
	campaigns   = []string{"spring-sale", "launch", "newsletter-42", "black-friday", "webinar", "retargeting"}
	utmSources  = newPicker([]weighted[source]{{40, source{"", "newsletter", "email"}}, {30, source{"", "google", "cpc"}}, {20, source{"", "twitter", "social"}}, {10, source{"", "partner", "affiliate"}}})
	goals       = []string{"signup", "purchase", "download", "newsletter"}
	plans       = []string{"free", "pro", "business"}
	languages   = []string{"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR"}
	// hourWeights is a diurnal curve (UTC): quiet nights, busy afternoons.
	hourWeights = []float64{2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 5.5, 6.5, 7, 7, 7, 7.5, 7.5, 7, 6.5, 6, 6, 5.5, 5, 4.5, 3.5, 2.5}
	hours       picker[int]
)

func init() {
	var items []weighted[int]
	for h, w := range hourWeights {
		items = append(items, weighted[int]{w, h})
	}
	hours = newPicker(items)
}

// site is one client's pages.
type site struct {
	id    string
	paths []string
	zipf  *rand.Zipf
}

func newSite(id string, quota int, r *rand.Rand) site {
	n := 40 + quota/5000 // bigger sites have more pages
	paths := []string{"/", "/pricing", "/blog", "/about", "/docs", "/signup", "/contact"}
	for i := 0; len(paths) < n; i++ {
		switch i % 3 {
		case 0:
			paths = append(paths, "/blog/post-"+strconv.Itoa(i))
		case 1:
			paths = append(paths, "/docs/section-"+strconv.Itoa(i%17)+"/page-"+strconv.Itoa(i))
		default:
			paths = append(paths, "/products/item-"+strconv.Itoa(i))
		}
	}
	return site{id: id, paths: paths, zipf: rand.NewZipf(r, 1.15, 2, uint64(len(paths)-1))}
}

// generator writes one client's events into blocks.
type generator struct {
	r          *rand.Rand
	start      time.Time
	days       int
	ev         aluminiv1.Event
	props      map[string]string
	emitted    int
	batchRows  int
	full, free chan *chschema.Block
	block      *chschema.Block
}

// emit adds the current event to the block and hands full blocks over.
func (g *generator) emit(ctx context.Context) error {
	g.ev.EventId = strconv.FormatUint(g.r.Uint64(), 36)
	g.block.Add(&g.ev)
	g.emitted++
	if g.block.Len() >= g.batchRows {
		return g.flush(ctx)
	}
	return nil
}

func (g *generator) flush(ctx context.Context) error {
	if g.block.Len() == 0 {
		return nil
	}
	select {
	case g.full <- g.block:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case g.block = <-g.free:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// client generates quota events of one site: visits of 1..30 page views
// (40% bounces), a goal event in 10% of visits, 2% bot visits; visitors
// keep their browser, device and place across visits, and a skewed choice
// of visitor makes some of them come back often.
func (g *generator) client(ctx context.Context, s site, quota int) error {
	visitors := max(1, quota/7)
	end := g.start.AddDate(0, 0, g.days).Unix()
	for done := 0; done < quota; {
		u := g.r.Float64()
		vIdx := uint64(float64(visitors) * u * u)
		vid := vIdx<<8 ^ uint64(len(s.id))<<56 ^ hashString(s.id)
		vr := rand.New(rand.NewPCG(vid, 7)) // per-visitor traits
		b := browsers.pick(vr)
		dev := devices.pick(vr)
		var osys system
		switch dev {
		case aluminiv1.DeviceType_DEVICE_TYPE_MOBILE:
			osys = mobileOS.pick(vr)
		case aluminiv1.DeviceType_DEVICE_TYPE_TABLET:
			osys = tabletOS.pick(vr)
		default:
			osys = desktopOS.pick(vr)
		}
		pl := places.pick(vr)
		ev := &g.ev
		*ev = aluminiv1.Event{
			ClientId: s.id, VisitorId: vid, SessionId: g.r.Uint64(),
			Browser: b.name, BrowserVersion: b.versions[vr.IntN(len(b.versions))], Os: osys.name, OsVersion: osys.version,
			DeviceType: dev, Country: pl.country, Region: pl.region, City: pl.city,
			Language: languages[vr.IntN(len(languages))], Timezone: "UTC", IsNewVisitor: g.r.IntN(10) < 3,
		}
		switch dev {
		case aluminiv1.DeviceType_DEVICE_TYPE_MOBILE:
			ev.ScreenWidth, ev.ScreenHeight = 390, 844
		case aluminiv1.DeviceType_DEVICE_TYPE_TABLET:
			ev.ScreenWidth, ev.ScreenHeight = 820, 1180
		default:
			ev.ScreenWidth, ev.ScreenHeight = 1920, 1080
		}
		if g.r.IntN(50) == 0 {
			ev.IsBot, ev.DeviceType, ev.Browser, ev.BrowserVersion, ev.Os, ev.OsVersion = true, aluminiv1.DeviceType_DEVICE_TYPE_BOT, "Googlebot", "2.1", "", ""
		}
		src := sources.pick(g.r)
		ev.Referrer, ev.ReferrerSource, ev.ReferrerMedium = src.referrer, src.source, src.medium
		if src.source == "Google" && g.r.IntN(10) < 3 {
			ev.SearchTerm = searchTerms[g.r.IntN(len(searchTerms))]
		}
		if g.r.IntN(10) == 0 {
			us := utmSources.pick(g.r)
			ev.UtmSource, ev.UtmMedium, ev.UtmCampaign = us.source, us.medium, campaigns[g.r.IntN(len(campaigns))]
			if us.medium == "cpc" {
				ev.UtmTerm = searchTerms[g.r.IntN(len(searchTerms))]
			}
			if g.r.IntN(2) == 0 {
				ev.UtmContent = "banner-" + strconv.Itoa(g.r.IntN(4))
			}
		}
		ev.Hostname = "www." + s.id + ".example"
		if g.r.IntN(10) == 0 {
			ev.Hostname = "shop." + s.id + ".example"
		}
		pages := 1
		for pages < 30 && g.r.Float64() < 0.6 {
			pages++
		}
		goalAt := -1
		if g.r.IntN(10) == 0 {
			goalAt = g.r.IntN(pages)
		}
		ts := g.start.Unix() + int64(g.r.IntN(g.days))*86400 + int64(hours.pick(g.r))*3600 + int64(g.r.IntN(3600))
		for i := 0; i < pages && done < quota; i++ {
			if ts >= end {
				ts = end - 1
			}
			ev.Type, ev.Name, ev.Properties = aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, "", nil
			ev.Path = s.paths[s.zipf.Uint64()]
			ev.Url, ev.Title = "https://"+ev.Hostname+ev.Path, ev.Path
			ev.TimestampMs, ev.ReceivedAtMs = ts*1000, ts*1000+250
			if err := g.emit(ctx); err != nil {
				return err
			}
			done++
			if i == goalAt && done < quota {
				ev.Type, ev.Name = aluminiv1.EventType_EVENT_TYPE_CUSTOM, goals[g.r.IntN(len(goals))]
				clear(g.props)
				g.props["plan"] = plans[g.r.IntN(len(plans))]
				ev.Properties = g.props
				ts += int64(1 + g.r.IntN(20))
				ev.TimestampMs, ev.ReceivedAtMs = ts*1000, ts*1000+250
				if err := g.emit(ctx); err != nil {
					return err
				}
				done++
			}
			ts += int64(5 + g.r.IntN(240))
		}
	}
	return nil
}

func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// seed fills the events table: one goroutine generates blocks, another
// inserts them with columnar batches, so generation and ClickHouse's
// parsing overlap on the two cores.
func seed(ctx context.Context, conn driver.Conn, cfg config, start time.Time, progress io.Writer) error {
	if err := chschema.Apply(ctx, conn, zap.NewNop()); err != nil {
		return fmt.Errorf("applying the schema: %w", err)
	}
	const batchRows = 200_000
	g := &generator{
		r: rand.New(rand.NewPCG(cfg.Seed, 1)), start: start, days: cfg.Days, props: map[string]string{},
		batchRows: batchRows, full: make(chan *chschema.Block), free: make(chan *chschema.Block, 2), block: new(chschema.Block),
	}
	g.free <- new(chschema.Block)
	genCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	genErr := make(chan error, 1)
	go func() {
		defer close(g.full)
		for i, q := range quotas(cfg.Events, cfg.Clients, cfg.LargestShare) {
			s := newSite(clientID(i), q, g.r)
			if err := g.client(genCtx, s, q); err != nil {
				genErr <- err
				return
			}
		}
		genErr <- g.flush(genCtx)
	}()
	began := time.Now()
	inserted := 0
	for b := range g.full {
		if err := insertBlock(ctx, conn, b); err != nil {
			cancel()
			for range g.full { // let the generator finish
			}
			return err
		}
		inserted += b.Len()
		b.Reset()
		g.free <- b
		if inserted%(batchRows*10) == 0 || inserted == cfg.Events {
			fmt.Fprintf(progress, "seeded %d/%d events in %s\n", inserted, cfg.Events, time.Since(began).Round(time.Second))
		}
	}
	if err := <-genErr; err != nil {
		return fmt.Errorf("generating events: %w", err)
	}
	if inserted != cfg.Events {
		return fmt.Errorf("seeded %d events; want %d", inserted, cfg.Events)
	}
	return nil
}

func insertBlock(ctx context.Context, conn driver.Conn, b *chschema.Block) error {
	batch, err := conn.PrepareBatch(ctx, chschema.InsertSQL)
	if err != nil {
		return fmt.Errorf("preparing insert: %w", err)
	}
	if err := b.AppendTo(batch); err != nil {
		return errors.Join(fmt.Errorf("appending block: %w", err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting block: %w", err)
	}
	return nil
}
