package geo_test

import (
	"net/netip"
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/geo"
	"github.com/aluminiapp/pipeline/enricher/internal/geo/geotest"
)

func TestLookupAndTruncate(t *testing.T) {
	path := geotest.Write(t,
		geotest.Network{CIDR: "81.2.69.0/24", Country: "GB", Subdivision: "ENG", City: "London"},
		geotest.Network{CIDR: "2001:db8:1::/48", Country: "DE", Subdivision: "BY", City: "Munich"},
	)
	db, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		ip   string
		want geo.Location
		cut  string
	}{
		{"81.2.69.160", geo.Location{Country: "GB", Region: "GB-ENG", City: "London"}, "81.2.69.0/24"},
		{"::ffff:81.2.69.1", geo.Location{Country: "GB", Region: "GB-ENG", City: "London"}, "81.2.69.0/24"},
		{"2001:db8:1:2::7", geo.Location{Country: "DE", Region: "DE-BY", City: "Munich"}, "2001:db8:1::/48"},
		{"192.0.2.1", geo.Location{}, "192.0.2.0/24"},
	} {
		ip := netip.MustParseAddr(tc.ip).AsSlice()
		if got := db.Lookup(ip); got != tc.want {
			t.Errorf("Lookup(%s) = %+v; want %+v", tc.ip, got, tc.want)
		}
		if got := geo.Truncate(ip); got != tc.cut {
			t.Errorf("Truncate(%s) = %q; want %q", tc.ip, got, tc.cut)
		}
	}
	var none *geo.DB
	if got := none.Lookup([]byte{81, 2, 69, 1}); got != (geo.Location{}) {
		t.Errorf("Lookup without a database = %+v; want nothing", got)
	}
	if got := db.Lookup([]byte{1, 2}); got != (geo.Location{}) {
		t.Errorf("Lookup of a 2-byte address = %+v; want nothing", got)
	}
}
