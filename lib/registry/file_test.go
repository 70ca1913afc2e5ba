package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
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
		{"ip range", "clients: [{id: a, exclude: {ip_ranges: [10.0.0.1]}}]", "exclude.ip_ranges"},
	} {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v; want an error mentioning %q", tc.name, err, tc.want)
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reg.Watch(ctx, 10*time.Millisecond, zap.NewNop())

	writeRegistry(t, path, "clients: [{id: a}, {id: b}]\n")
	waitFor(t, func() bool { _, err := reg.ByID("b"); return err == nil })

	writeRegistry(t, path, "clients: [{id: 'BROKEN'}]\n")
	time.Sleep(50 * time.Millisecond)
	if _, err := reg.ByID("b"); err != nil {
		t.Fatalf("after an invalid edit, ByID(b) = %v; want the last good version kept", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
