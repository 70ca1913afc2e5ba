package useragent

import (
	"strings"
	"testing"
)

// Bot targets of issue 21 on the parser as a whole (crawler list, generic
// rules and ua-parser's spider devices): ordinary browsers flagged at
// most 0.05 % on every corpus of real browsers, and uap-core's own
// spiders caught.
const (
	maxBrowsersFlagged = 0.0005
	minSpidersCaught   = 0.99
)

func TestBrowserCorporaAreNotBots(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	corpora := map[string][]string{}
	// uap-core's device cases of browsers (a Mozilla user agent) on
	// every kind of phone, tablet and computer it names, spiders left out.
	for _, c := range loadUAP(t, "test_device.yaml") {
		if c.Family != "Spider" && strings.HasPrefix(c.UA, "Mozilla/") {
			corpora["uap-core test_device browsers"] = append(corpora["uap-core test_device browsers"], c.UA)
		}
	}
	for _, c := range loadIntoli(t) {
		corpora["intoli user-agents"] = append(corpora["intoli user-agents"], c.UA)
	}
	for name, uas := range corpora {
		flagged := 0
		for _, ua := range uas {
			if p.ParseUncached(ua).Bot {
				flagged++
				t.Logf("%s: Parse(%q) = bot", name, ua)
			}
		}
		t.Logf("%s: %d of %d flagged as bots (%.3f%%)", name, flagged, len(uas), 100*share(flagged, len(uas)))
		if share(flagged, len(uas)) > maxBrowsersFlagged {
			t.Errorf("%s: %d of %d browsers flagged as bots; want at most %.2f%%", name, flagged, len(uas), 100*maxBrowsersFlagged)
		}
	}
}

func TestUAPSpidersAreBots(t *testing.T) {
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	n, caught := 0, 0
	for _, c := range loadUAP(t, "test_device.yaml") {
		if c.Family != "Spider" {
			continue
		}
		n++
		if p.ParseUncached(c.UA).Bot {
			caught++
		} else {
			t.Logf("Parse(%q) = no bot; uap-core says Spider", c.UA)
		}
	}
	t.Logf("uap-core spiders caught: %d of %d", caught, n)
	if share(caught, n) < minSpidersCaught {
		t.Errorf("caught %d of %d uap-core spiders; want at least %.0f%%", caught, n, 100*minSpidersCaught)
	}
}
