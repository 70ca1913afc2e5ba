package useragent

import (
	"testing"

	medama "github.com/medama-io/go-useragent"
	"github.com/mileusna/useragent"
	"github.com/ua-parser/uap-go/uaparser"
)

// BenchmarkLibraries is the comparison that chose the parsers: agreement on
// uap-core's browser families and time per uncached parse of the corpus.
//
//	go test -run '^$' -bench Libraries -benchtime 1x ./internal/useragent/
func BenchmarkLibraries(b *testing.B) {
	cases := loadUAP(b, "test_ua.yaml")
	uap, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		b.Fatal(err)
	}
	trie := medama.NewParser()
	ours, err := New(1)
	if err != nil {
		b.Fatal(err)
	}
	for _, lib := range []struct {
		name   string
		family func(ua string) string
	}{
		{"uap-go", func(ua string) string { return uap.ParseUserAgent(ua).Family }},
		{"mileusna", func(ua string) string { return useragent.Parse(ua).Name }},
		{"medama", func(ua string) string { return string(trie.Parse(ua).Browser()) }},
		{"alumini", func(ua string) string {
			if f := ours.ParseUncached(ua).Browser; f != "" {
				return f
			}
			return "Other"
		}},
	} {
		b.Run(lib.name, func(b *testing.B) {
			ok := 0
			for b.Loop() {
				ok = 0
				for _, c := range cases {
					if lib.family(c.UA) == c.Family {
						ok++
					}
				}
			}
			b.ReportMetric(100*float64(ok)/float64(len(cases)), "%agree")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cases)), "ns/parse")
		})
	}
}
