// Package geo finds the country, region and city of an IP address in a
// MaxMind or DB-IP city database (.mmdb) that the operator supplies.
package geo

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Location is where an address is, as far as the database knows.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code.
	Country string
	// Region is the ISO 3166-2 subdivision code (US-CA, DE-BY).
	Region string
	// City is the city's English name.
	City string
}

// record is the part of a GeoIP2/GeoLite2/DB-IP City record we read;
// decoding only these fields keeps lookups cheap.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
}

// DB is an open database; safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// Open memory-maps the database at path.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening geo database %s: %w", path, err)
	}
	return &DB{r: r}, nil
}

// Lookup locates ip (4 or 16 bytes). A nil DB, an address the database does
// not know and a malformed address all give an empty Location: geo is an
// extra, never a reason to lose a hit.
func (db *DB) Lookup(ip []byte) Location {
	if db == nil {
		return Location{}
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return Location{}
	}
	var rec record
	if err := db.r.Lookup(addr.Unmap()).Decode(&rec); err != nil {
		return Location{}
	}
	loc := Location{Country: rec.Country.ISOCode, City: rec.City.Names.En}
	if len(rec.Subdivisions) > 0 && rec.Subdivisions[0].ISOCode != "" && loc.Country != "" {
		loc.Region = loc.Country + "-" + rec.Subdivisions[0].ISOCode
	}
	return loc
}

// Close unmaps the database.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	return db.r.Close()
}

// Truncate cuts ip to its /24 (IPv4) or /48 (IPv6) network, the form a
// client may ask to keep instead of no address at all.
func Truncate(ip []byte) string {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	addr = addr.Unmap()
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}
