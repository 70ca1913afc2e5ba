package registry

import (
	"bytes"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds registry files as an operator (or a half-finished edit)
// writes them. Whatever the input: no panic; a file that parses has only
// valid clients, unique ids and unique keys, each key finding its client;
// and writing the parsed clients back out parses to the same clients.
func FuzzParse(f *testing.F) {
	f.Add([]byte("clients:\n  - id: shop\n    write_keys: [wk_shop]\n    domains: [shop.example]\n    exclude:\n      ip_ranges: [192.0.2.0/24, \"2001:db8::/32\"]\n      hostnames: [\"*.preview.shop.example\"]\n      paths: [/admin/*]\n"))
	f.Add([]byte("clients:\n  - {id: a, cookie_mode: cookie, time_zone: Europe/Berlin, bots: drop, rate_limit_per_second: 5}\n  - id: b\n    api_key_hashes: [\"sha256:" + string(bytes.Repeat([]byte("ab"), 32)) + "\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := parse(data)
		if err != nil {
			return
		}
		if len(ix.clients) == 0 {
			t.Fatal("parsed a registry without clients")
		}
		for i := range ix.clients {
			c := &ix.clients[i]
			if err := c.Validate(); err != nil {
				t.Fatalf("parsed client %q is not valid: %v", c.ID, err)
			}
			if ix.byID[c.ID] != c {
				t.Fatalf("client %q is not found by its id", c.ID)
			}
			for _, k := range c.WriteKeys {
				if ix.byWriteKey[k] != c {
					t.Fatalf("write key %q of %q finds another client", k, c.ID)
				}
			}
		}
		if len(ix.byID) != len(ix.clients) {
			t.Fatalf("%d clients, %d ids", len(ix.clients), len(ix.byID))
		}
		out, err := yaml.Marshal(fileFormat{Clients: ix.clients})
		if err != nil {
			t.Fatalf("writing the parsed clients: %v", err)
		}
		again, err := parse(out)
		if err != nil {
			t.Fatalf("the parsed clients, written out, do not parse: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(fileFormat{Clients: again.clients})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("written out and parsed again, the clients changed:\n%s\nthen\n%s", out, out2)
		}
	})
}
