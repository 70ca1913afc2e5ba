package uaregex

import (
	"testing"

	"github.com/ua-parser/uap-go/uaparser"
)

// BenchmarkParseCorpus is one uncached parse (browser, OS and device) of
// a uap-core test_ua.yaml user agent, the long tail of rare clients.
func BenchmarkParseCorpus(b *testing.B) {
	p, err := New()
	if err != nil {
		b.Fatal(err)
	}
	uas := corpus(b, "test_ua.yaml")
	i := 0
	for b.Loop() {
		p.Parse(uas[i%len(uas)])
		i++
	}
}

// BenchmarkUAPGoCorpus is uap-go on the same user agents, its cache off.
func BenchmarkUAPGoCorpus(b *testing.B) {
	p, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		b.Fatal(err)
	}
	uas := corpus(b, "test_ua.yaml")
	i := 0
	for b.Loop() {
		ua := uas[i%len(uas)]
		p.ParseUserAgent(ua)
		p.ParseOs(ua)
		p.ParseDevice(ua)
		i++
	}
}
