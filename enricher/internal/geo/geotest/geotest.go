// Package geotest writes small city databases for tests (see citydb).
package geotest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/geo/citydb"
)

// Network is one entry: a CIDR and where it is.
type Network = citydb.Network

// Write builds a database of networks in a temporary folder and returns
// its path.
func Write(t testing.TB, networks ...Network) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := citydb.Write(f, networks...); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
