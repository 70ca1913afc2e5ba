// Package citydb writes small city databases in the layout of MaxMind's
// GeoIP2 City with maxmind/mmdbwriter: test fixtures, and the demo
// database `make run` starts the enricher with.
package citydb

import (
	"fmt"
	"io"
	"net"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Network is one entry: a CIDR and where it is.
type Network struct {
	CIDR, Country, Subdivision, City string
}

// Write encodes a database of networks to w.
func Write(w io.Writer, networks ...Network) error {
	// Reserved networks are allowed so that tests and the demo can use
	// loopback and the documentation ranges (192.0.2.0/24, 2001:db8::/32).
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		return fmt.Errorf("city database: %w", err)
	}
	for _, n := range networks {
		_, network, err := net.ParseCIDR(n.CIDR)
		if err != nil {
			return fmt.Errorf("city database: network %q: %w", n.CIDR, err)
		}
		rec := mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String(n.Country)},
			"city":    mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(n.City)}},
		}
		if n.Subdivision != "" {
			rec["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(n.Subdivision)}}
		}
		if err := tree.Insert(network, rec); err != nil {
			return fmt.Errorf("city database: network %s: %w", n.CIDR, err)
		}
	}
	if _, err := tree.WriteTo(w); err != nil {
		return fmt.Errorf("city database: %w", err)
	}
	return nil
}
