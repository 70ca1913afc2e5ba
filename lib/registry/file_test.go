package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aluminiapp/pipeline/lib/eventually"
)

func writeRegistry(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLookupsAndHashedAPIKeys(t *testing.T) {
	key, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clients.yaml")
	writeRegistry(t, path, `
clients:
  - id: shop
    name: Shop
    domains: [shop.example]
    write_keys: [wk_shop]
    api_key_hashes: ["`+HashAPIKey(key)+`"]
    respect_dnt: true
  - id: blog
    cookie_mode: cookie
`)
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := reg.ByAPIKey(key); err != nil || c.ID != "shop" {
		t.Errorf("ByAPIKey(key) = %v, %v; want shop", c, err)
	}
	if _, err := reg.ByAPIKey(HashAPIKey(key)); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByAPIKey(hash) = %v; the stored hash must not work as a key", err)
	}
	if _, err := reg.ByAPIKey("wk_shop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByAPIKey(write key) = %v; a write key must never grant read access", err)
	}
	if c, err := reg.ByWriteKey("wk_shop"); err != nil || c.ID != "shop" {
		t.Errorf("ByWriteKey = %v, %v; want shop", c, err)
	}
	if c, err := reg.ByID("blog"); err != nil || c.CookieMode != CookieModeCookie {
		t.Errorf("ByID(blog) = %+v, %v; want cookie mode", c, err)
	}
	if c, _ := reg.ByID("shop"); c.CookieMode != CookieModeCookieless || c.TimeZone != "UTC" || c.Bots != BotsFlag {
		t.Errorf("defaults = %q %q %q; want %q UTC %q", c.CookieMode, c.TimeZone, c.Bots, CookieModeCookieless, BotsFlag)
	}
	if strings.Contains(mustRead(t, path), key) {
		t.Error("the registry file holds the plain API key")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"bad id", "clients: [{id: 'Has Space'}]", "client id"},
		{"duplicate id", "clients: [{id: a}, {id: a}]", "appears twice"},
		{"shared write key", "clients: [{id: a, write_keys: [k]}, {id: b, write_keys: [k]}]", "also a write key"},
		{"plain api key", "clients: [{id: a, api_key_hashes: [alm_123]}]", "sha256:"},
		{"unknown field", "clients: [{id: a, respect_dtn: true}]", "respect_dtn"},
		{"cookie mode", "clients: [{id: a, cookie_mode: sometimes}]", "cookie_mode"},
		{"domain with scheme", "clients: [{id: a, domains: ['https://a.example']}]", "bare host"},
		{"time zone", "clients: [{id: a, time_zone: Mars/Olympus}]", "time_zone"},
		{"bots", "clients: [{id: a, bots: hide}]", "bots"},
		{"ip range", "clients: [{id: a, exclude: {ip_ranges: [10.0.0.0/99]}}]", "exclude.ip_ranges"},
		{"ip range name", "clients: [{id: a, exclude: {ip_ranges: [office]}}]", "exclude.ip_ranges"},
		{"relative path", "clients: [{id: a, exclude: {paths: [admin]}}]", "exclude.paths"},
		{"host with scheme", "clients: [{id: a, exclude: {hostnames: ['https://a']}}]", "exclude.hostnames"},
		{"host wildcard inside", "clients: [{id: a, exclude: {hostnames: ['a.*.example']}}]", "exclude.hostnames"},
		{"empty host", "clients: [{id: a, exclude: {hostnames: ['']}}]", "exclude.hostnames"},
		{"misspelt exclusion", "clients: [{id: a, exclude: {path: [/a]}}]", "field path not found"},
		{"negative rate", "clients: [{id: a, rate_limit_per_second: -1}]", "must not be negative"},
		{"negative burst", "clients: [{id: a, rate_limit_burst: -1}]", "must not be negative"},
		{"plain server key", "clients: [{id: a, server_key_hashes: [srv_secret]}]", "server key hash"},
		{"shared server key", "clients: [{id: a, server_key_hashes: [" + HashAPIKey("s") + "]}, {id: b, server_key_hashes: [" + HashAPIKey("s") + "]}]", "also a server key of client a"},
		{"server key is an api key", "clients: [{id: a, server_key_hashes: [" + HashAPIKey("s") + "]}, {id: b, api_key_hashes: [" + HashAPIKey("s") + "]}]", "also an api key of client b"},
		{"child-directed with a cookie", "clients: [{id: a, child_directed: true, cookie_mode: cookie}]", "child_directed sets no cookie"},
		{"child-directed keeping networks", "clients: [{id: a, child_directed: true, keep_truncated_ip: true}]", "keep_truncated_ip false"},
		{"empty", "", "no clients"},
		{"only comments", "# clients: [{id: a}]\n", "no clients"},
		{"no clients", "clients:\n", "no clients"},
		{"cut short", "clients:\n  - id: a\n    cookie_mode: coo", "cookie_mode"},
	} {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestExclusionsAndServerKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	writeRegistry(t, path, `
clients:
  - id: shop
    rate_limit_per_second: 0.5
    rate_limit_burst: 20
    server_key_hashes: ["`+HashAPIKey("srv_secret")+`"]
    exclude:
      ip_ranges: [10.0.0.0/8, 203.0.113.7, "2001:db8::/32"]
      hostnames: [Staging.Shop.Example, "*.test.shop.example"]
      paths: [/admin/*, /preview]
  - id: blog
`)
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.ByServerKey("srv_secret")
	if err != nil || c.ID != "shop" || c.RateLimitPerSecond != 0.5 || c.RateLimitBurst != 20 {
		t.Fatalf("ByServerKey(srv_secret) = %+v, %v; want shop with rate 0.5, burst 20", c, err)
	}
	for _, key := range []string{HashAPIKey("srv_secret"), "", "srv_other"} {
		if _, err := reg.ByServerKey(key); !errors.Is(err, ErrNotFound) {
			t.Errorf("ByServerKey(%q) = %v; want ErrNotFound (the stored hash must not work as a key)", key, err)
		}
	}
	if _, err := reg.ByAPIKey("srv_secret"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByAPIKey(server key) = %v; a server key must never grant read access", err)
	}
	if _, err := reg.ByWriteKey("srv_secret"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByWriteKey(server key) = %v; want ErrNotFound", err)
	}
}

func TestParseIPRange(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.1.2.3/8", "10.0.0.0/8"},
		{" 203.0.113.7 ", "203.0.113.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
	} {
		if got, err := ParseIPRange(tc.in); err != nil || got.String() != tc.want {
			t.Errorf("ParseIPRange(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseHostname(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Staging.Shop.Example", "staging.shop.example"},
		{"*.Test.Example", ".test.example"},
	} {
		if got, err := ParseHostname(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseHostname(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWatchReloadsAndKeepsLastGoodVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	writeRegistry(t, path, "clients: [{id: a}]\n")
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v := reg.Version(); v != 1 {
		t.Errorf("Version() after OpenFile = %d; want 1", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, logs := observer.New(zap.ErrorLevel)
	go reg.Watch(ctx, 5*time.Millisecond, zap.New(core))

	writeRegistry(t, path, "clients: [{id: a}, {id: b}]\n")
	waitFor(t, func() bool { _, err := reg.ByID("b"); return err == nil })
	good := reg.Version()
	if good < 2 {
		t.Errorf("Version() after a reload = %d; want more than 1", good)
	}

	for i, bad := range []string{
		"clients: [{id: 'BROKEN'}]\n",
		"",           // truncated, not written yet
		"clients:\n", // cut short before the first client
		"clients:\n  - id: a\n  - id:",
	} {
		writeRegistry(t, path, bad)
		// The watcher read the file, saw it settle and refused it.
		eventually.True(t, 5*time.Second, fmt.Sprintf("the refusal of %q to be logged", bad), func() bool {
			return logs.FilterMessage("client registry not reloaded; keeping the previous version").Len() >= i+1
		})
		if _, err := reg.ByID("b"); err != nil {
			t.Fatalf("after writing %q, ByID(b) = %v; want the last good version kept", bad, err)
		}
		if v := reg.Version(); v != good {
			t.Fatalf("after writing %q, Version() = %d; want %d", bad, v, good)
		}
	}
}

// A file caught half-written can be valid YAML listing fewer clients. It
// must not be put in force: only content that stayed the same for two polls
// in a row is.
func TestReloadWaitsForTheFileToSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	full := "clients:\n  - id: a\n  - id: b\n"
	writeRegistry(t, path, full)
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	poll := func(wantChanged bool) {
		t.Helper()
		changed, err := reg.reload()
		if err != nil || changed != wantChanged {
			t.Fatalf("reload() = %v, %v; want %v, nil", changed, err, wantChanged)
		}
	}
	// The writer truncated the file and wrote its first client so far.
	writeRegistry(t, path, full[:len("clients:\n  - id: a\n")])
	poll(false)
	// The writer finished before the next poll: the cut was never applied.
	writeRegistry(t, path, full+"  - id: c\n")
	poll(false)
	if _, err := reg.ByID("b"); err != nil {
		t.Fatalf("ByID(b) = %v while the file was being written; want the last good version", err)
	}
	poll(true)
	if _, err := reg.ByID("c"); err != nil {
		t.Fatalf("ByID(c) = %v after the file settled; want the new version", err)
	}
	poll(false)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	eventually.True(t, 5*time.Second, "the condition", cond)
}

// The kubelet updates a ConfigMap mounted as a folder by writing the new
// version into a fresh timestamped folder, pointing the ..data symlink at
// it with a rename, and deleting the old folder; clients.yaml itself is a
// symlink to ..data/clients.yaml that never changes. The watcher must see
// each swap (a watch on the file's inode would not).
func TestWatchFollowsConfigMapSymlinkSwaps(t *testing.T) {
	dir := t.TempDir()
	version := 0
	swap := func(body string) {
		t.Helper()
		version++
		ts := filepath.Join(dir, fmt.Sprintf("..2026_12_04_18_00_%02d.%d", version, version))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		writeRegistry(t, filepath.Join(ts, "clients.yaml"), body)
		old, _ := os.Readlink(filepath.Join(dir, "..data")) // none before the first version
		if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		}
	}
	swap("clients: [{id: a}]\n")
	path := filepath.Join(dir, "clients.yaml")
	if err := os.Symlink(filepath.Join("..data", "clients.yaml"), path); err != nil {
		t.Fatal(err)
	}
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reg.Watch(ctx, 5*time.Millisecond, zap.NewNop())

	swap("clients: [{id: a}, {id: b}]\n")
	waitFor(t, func() bool { _, err := reg.ByID("b"); return err == nil })
	swap("clients: [{id: c}]\n")
	waitFor(t, func() bool { _, err := reg.ByID("c"); return err == nil })
	if _, err := reg.ByID("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByID(a) after the second swap = %v; want ErrNotFound", err)
	}
	if v := reg.Version(); v != 3 {
		t.Errorf("Version() after two swaps = %d; want 3", v)
	}
}

func TestByDomainAndUmamiWebsite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	writeRegistry(t, path, `
clients:
  - id: shop
    domains: [Shop.example, shared.example]
    umami_website_ids: [6a1b1f0c-0b5e-4c39-a5e9-3d8ea6c5d001]
  - id: kids
    domains: [kids.example, shared.example]
`)
	reg, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain, want string
		err          error
	}{
		{"shop.example", "shop", nil}, {"SHOP.EXAMPLE", "shop", nil}, {"kids.example", "kids", nil},
		{"shared.example", "", ErrAmbiguous}, {"other.example", "", ErrNotFound},
	} {
		c, err := reg.ByDomain(tc.domain)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ByDomain(%q) = %v, %v; want %v", tc.domain, c, err, tc.err)
			}
		} else if err != nil || c.ID != tc.want {
			t.Errorf("ByDomain(%q) = %v, %v; want %s", tc.domain, c, err, tc.want)
		}
	}
	if c, err := reg.ByUmamiWebsite("6a1b1f0c-0b5e-4c39-a5e9-3d8ea6c5d001"); err != nil || c.ID != "shop" {
		t.Errorf("ByUmamiWebsite = %v, %v; want shop", c, err)
	}
	if _, err := reg.ByUmamiWebsite("unknown"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByUmamiWebsite(unknown) = %v; want ErrNotFound", err)
	}
	if _, err := Parse([]byte("clients: [{id: a, umami_website_ids: [w]}, {id: b, umami_website_ids: [w]}]")); err == nil || !strings.Contains(err.Error(), "umami website id") {
		t.Errorf("Parse(shared umami website id) = %v; want it refused", err)
	}
}
