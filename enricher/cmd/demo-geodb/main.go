// Command demo-geodb writes the made-up city database `make run` gives the
// enricher, so that a try-out on one machine shows countries: loopback and
// the documentation networks are placed in a few countries. It is not a
// geo database; docs/enricher.md#geo says how to get a real one.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aluminiapp/pipeline/enricher/internal/geo/citydb"
)

// demoNetworks place the addresses a try-out sends from. The documentation
// ranges can be sent through a trusted proxy's X-Forwarded-For (collector
// flag -trusted-proxies) to see several countries.
var demoNetworks = []citydb.Network{
	{CIDR: "127.0.0.0/8", Country: "DE", Subdivision: "BE", City: "Berlin"},
	{CIDR: "::1/128", Country: "DE", Subdivision: "BE", City: "Berlin"},
	{CIDR: "192.0.2.0/24", Country: "GB", Subdivision: "ENG", City: "London"},
	{CIDR: "198.51.100.0/24", Country: "US", Subdivision: "CA", City: "San Francisco"},
	{CIDR: "203.0.113.0/24", Country: "JP", Subdivision: "13", City: "Tokyo"},
	{CIDR: "2001:db8::/32", Country: "FR", Subdivision: "IDF", City: "Paris"},
}

func main() {
	out := flag.String("o", "demo-city.mmdb", "file to write")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "demo-geodb:", err)
		os.Exit(1)
	}
}

// write replaces path atomically, so an enricher never reads half a file.
func write(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".demo-city-*.mmdb")
	if err != nil {
		return err
	}
	if err := citydb.Write(tmp, demoNetworks...); err != nil {
		return fmt.Errorf("%w (and removing %s: %w)", err, tmp.Name(), os.Remove(tmp.Name()))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	return os.Rename(tmp.Name(), path)
}
