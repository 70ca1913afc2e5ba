package enrich

import (
	"fmt"
	"testing"

	"github.com/ua-parser/uap-go/uaparser"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uamix"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// The whole-step figures of docs/bench/enricher.md, one core:
//
//	go test -run '^$' -bench 'Step|UAPGo' -benchtime 3s -cpu 1 ./internal/enrich/

// rawMix is a realistic stream of encoded raw hits: mainstream browsers
// with a few bots, direct, search, social and campaign traffic, from 256
// addresses.
func rawMix(b *testing.B) [][]byte {
	b.Helper()
	uas := append(append([]string(nil), uamix.Realistic...), uamix.Bots...)
	refs := []string{"", "", "https://www.google.com/", "https://duckduckgo.com/?q=hiking+boots", "https://l.facebook.com/", "https://shop.example/cart"}
	pages := []string{"https://shop.example/", "https://shop.example/boots?utm_source=news&utm_medium=email&utm_campaign=nov", "https://shop.example/cart"}
	var out [][]byte
	for i := range 4096 {
		hit := &aluminiv1.RawHit{
			ClientId: "shop", EventId: fmt.Sprintf("0193a1b2-0001-7000-8000-%012d", i), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
			Url: pages[i%len(pages)], Referrer: refs[i%len(refs)], Title: "Boots", UserAgent: uas[i%len(uas)],
			Ip: []byte{81, 2, 69, byte(i)}, Language: "en-GB", ScreenWidth: 1920, ScreenHeight: 1080,
			Timezone: "Europe/London", ReceivedAtMs: 1795600000000 + int64(i),
		}
		raw, err := proto.Marshal(hit)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// BenchmarkEnrichStep is decode, enrich and encode of one hit; events/s is
// 1e9 / ns/op on one core.
func BenchmarkEnrichStep(b *testing.B) {
	e := testEnricher(b)
	raws := rawMix(b)
	i := 0
	for b.Loop() {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(raws[i%len(raws)], &hit); err != nil {
			b.Fatal(err)
		}
		ev, err := e.Enrich(&hit)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkUAPGoAlone is the baseline of the same run: only parsing each
// hit's user agent with uap-go, with uap-go's own cache at its default size.
func BenchmarkUAPGoAlone(b *testing.B) {
	p, err := uaparser.New()
	if err != nil {
		b.Fatal(err)
	}
	raws := rawMix(b)
	uas := make([]string, len(raws))
	for i, raw := range raws {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(raw, &hit); err != nil {
			b.Fatal(err)
		}
		uas[i] = hit.UserAgent
	}
	i := 0
	for b.Loop() {
		p.Parse(uas[i%len(uas)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
