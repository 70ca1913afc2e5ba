package useragent

import (
	"testing"

	"github.com/ua-parser/uap-go/uaparser"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uamix"
)

// The speed figures of docs/bench/enricher.md:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/useragent/

// BenchmarkParseCached is a cache hit on a uamix.Realistic mix.
func BenchmarkParseCached(b *testing.B) {
	p, err := New(1 << 14)
	if err != nil {
		b.Fatal(err)
	}
	for _, ua := range uamix.Realistic {
		p.Parse(ua, nil)
	}
	i := 0
	for b.Loop() {
		p.Parse(uamix.Realistic[i%len(uamix.Realistic)], nil)
		i++
	}
}

// BenchmarkParseUncachedRealistic is a cache miss on a mainstream user
// agent, answered by the fast tier (plus the bot check).
func BenchmarkParseUncachedRealistic(b *testing.B) {
	p, err := New(16)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		p.ParseUncached(uamix.Realistic[i%len(uamix.Realistic)])
		i++
	}
}

// BenchmarkParseUncachedCorpus is a cache miss on the uap-core corpus,
// which is mostly rare clients: nearly all go to uap-go.
func BenchmarkParseUncachedCorpus(b *testing.B) {
	p, err := New(16)
	if err != nil {
		b.Fatal(err)
	}
	cases := loadUAP(b, "test_ua.yaml")
	i := 0
	for b.Loop() {
		p.ParseUncached(cases[i%len(cases)].UA)
		i++
	}
}

// BenchmarkUAPGoAloneRealistic is the baseline: uap-go on the same mix,
// with its own cache turned down to one entry so every parse is real work.
func BenchmarkUAPGoAloneRealistic(b *testing.B) {
	p, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		p.Parse(uamix.Realistic[i%len(uamix.Realistic)])
		i++
	}
}

// BenchmarkAppFamily is the apps table's own cost per slow-path parse, on
// the uap-core corpus with uap-go's families (the fast tier never runs it).
func BenchmarkAppFamily(b *testing.B) {
	p, err := New(16)
	if err != nil {
		b.Fatal(err)
	}
	cases := loadUAP(b, "test_ua.yaml")
	families := make([]string, len(cases))
	for i, c := range cases {
		u, _, _ := p.slow.Parse(c.UA)
		if families[i] = u.Family; families[i] == "Other" {
			families[i] = ""
		}
	}
	i := 0
	for b.Loop() {
		appFamily(cases[i%len(cases)].UA, families[i%len(families)])
		i++
	}
}
