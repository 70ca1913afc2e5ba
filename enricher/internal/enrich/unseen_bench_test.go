package enrich

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uacorpus"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// BenchmarkEnrichStepUnseen is the enrich step on the rawMix stream in
// which every tenth hit carries a long-tail user agent from uap-core's
// test_ua.yaml: "cached" repeats 500 of them (all in the cache after the
// first round), "unseen10" makes each one new by numbering it, so every
// tenth hit misses the cache. The ratio of the two is the long tail's
// cost (issue 21's target: at most 2.5x); compare cpu-ns/op:
//
//	taskset -c 1 go test -run '^$' -bench StepUnseen -benchtime 200000x -cpu 1 -count 5 ./internal/enrich/
func BenchmarkEnrichStepUnseen(b *testing.B) {
	tail := longTail(b)
	for _, mode := range []struct {
		name   string
		unseen bool
	}{{"cached", false}, {"unseen10", true}} {
		b.Run(mode.name, func(b *testing.B) {
			e := testEnricher(b)
			raws := rawMix(b)
			if !mode.unseen {
				// The repeated 500 enter the cache before timing.
				for k := range 500 {
					var hit aluminiv1.RawHit
					if err := proto.Unmarshal(raws[k%len(raws)], &hit); err != nil {
						b.Fatal(err)
					}
					hit.UserAgent = numbered(tail[k%len(tail)], k)
					if _, err := e.Enrich(&hit); err != nil {
						b.Fatal(err)
					}
				}
			}
			i := 0
			var ru0, ru1 syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				var hit aluminiv1.RawHit
				if err := proto.Unmarshal(raws[i%len(raws)], &hit); err != nil {
					b.Fatal(err)
				}
				if i%10 == 9 {
					k := i / 10
					if !mode.unseen {
						k %= 500
					}
					hit.UserAgent = numbered(tail[k%len(tail)], k)
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
			// CPU time: on a machine shared with other work, wall-clock
			// time per event says more about the neighbours.
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
				b.Fatal(err)
			}
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// longTail are the user agents of uap-core's test_ua.yaml.
func longTail(b *testing.B) []string { return uacorpus.UserAgents(b, "test_ua.yaml") }

// numbered makes ua distinct for each k by a build number of its own
// appended in a comment, which changes no parser's answer about the
// browser the way a new version number might.
func numbered(ua string, k int) string {
	var sb strings.Builder
	sb.Grow(len(ua) + 12)
	sb.WriteString(ua)
	sb.WriteString(" (")
	sb.WriteString(strconv.Itoa(k))
	sb.WriteByte(')')
	return sb.String()
}
