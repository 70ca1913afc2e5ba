package main

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/geo"
)

// TestDemoDatabasePlacesLoopback: the database `make run` uses answers for
// the addresses a try-out sends from.
func TestDemoDatabasePlacesLoopback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.mmdb")
	if err := write(path); err != nil {
		t.Fatal(err)
	}
	db, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"127.0.0.1": "DE", "::1": "DE", "198.51.100.7": "US", "2001:db8::1": "FR"} {
		if got := db.Lookup(netip.MustParseAddr(addr).AsSlice()).Country; got != want {
			t.Errorf("Lookup(%s).Country = %q; want %q", addr, got, want)
		}
	}
}
