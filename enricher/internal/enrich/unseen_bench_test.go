package enrich

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// BenchmarkEnrichStepUnseen is the enrich step on the rawMix stream in
// which every tenth hit carries a long-tail user agent from uap-core's
// test_ua.yaml: "cached" repeats 500 of them (all in the cache after the
// first round), "unseen10" makes each one new by numbering it, so every
// tenth hit misses the cache. The ratio of the two is the long tail's
// cost (issue 21's target: at most 2.5x):
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
			i := 0
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
		})
	}
}

// longTail are the user agents of uap-core's test_ua.yaml (Apache-2.0,
// enricher/testdata/uap-core).
func longTail(b *testing.B) []string {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "uap-core", "test_ua.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			UA string `yaml:"user_agent_string"`
		} `yaml:"test_cases"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		b.Fatal(err)
	}
	out := make([]string, 0, len(doc.Cases))
	for _, c := range doc.Cases {
		out = append(out, c.UA)
	}
	return out
}

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
