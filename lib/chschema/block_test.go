package chschema

import (
	"fmt"
	"testing"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// TestGrowKeepsRows checks that a grown block holds what an ungrown one
// holds, properties included (they point into a shared array).
func TestGrowKeepsRows(t *testing.T) {
	evs := blockEvents(50)
	var plain, grown Block
	grown.Grow(7) // smaller than the batch: appends beyond it still work
	for _, ev := range evs {
		plain.Add(ev)
		grown.Add(ev)
	}
	if grown.Len() != len(evs) {
		t.Fatalf("Len = %d; want %d", grown.Len(), len(evs))
	}
	if got, want := fmt.Sprint(grown.columns()), fmt.Sprint(plain.columns()); got != want {
		t.Errorf("grown block differs:\n%s\nwant\n%s", got, want)
	}
	if k, v := grown.propKeys[49], grown.propValues[49]; len(k) != 2 || k[0] != "ab" || v[1] != "p49" {
		t.Errorf("row 49 properties = %v %v; want [ab plan] [b p49]", k, v)
	}
}

// BenchmarkBlockAdd fills a new block with a 100,000-event batch, as the
// sinker does when the pool lost its blocks to a garbage collection, with
// and without Grow first. Compare the two in one run:
//
//	go test ./schema -run '^$' -bench BlockAdd -count 5
func BenchmarkBlockAdd(b *testing.B) {
	evs := blockEvents(100_000)
	for _, grow := range []bool{false, true} {
		b.Run(fmt.Sprintf("grow=%v", grow), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var blk Block
				if grow {
					blk.Grow(len(evs))
				}
				for _, ev := range evs {
					blk.Add(ev)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}

func blockEvents(n int) []*aluminiv1.Event {
	evs := make([]*aluminiv1.Event, n)
	for i := range evs {
		evs[i] = &aluminiv1.Event{
			ClientId: "shop", EventId: fmt.Sprintf("e%d", i), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
			TimestampMs: 1_780_000_000_000 + int64(i), Url: "https://shop.example/pricing", Path: "/pricing",
			Browser: "Chrome", Os: "Linux", Country: "DE", VisitorId: uint64(i % 97), SessionId: uint64(i % 31),
			Properties: map[string]string{"plan": fmt.Sprintf("p%d", i), "ab": "b"},
		}
	}
	return evs
}
