package rules

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
)

func TestExcluded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	doc := `
clients:
  shop:
    rate_limit_per_second: 50
    exclude:
      ip_ranges: [10.0.0.0/8, 203.0.113.7]
      hostnames: [staging.shop.example, "*.test.shop.example"]
      paths: [/admin/*, /preview]
    server_key_hashes: ["` + registry.HashAPIKey("srv_secret") + `"]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := s.For("shop")
	if c == nil || c.RateLimitPerSecond != 50 {
		t.Fatalf("For(shop) = %+v; want rate 50", c)
	}
	for _, tc := range []struct{ ip, host, path, want string }{
		{"10.3.4.5", "shop.example", "/", "ip"},
		{"203.0.113.7", "shop.example", "/", "ip"},
		{"203.0.113.8", "shop.example", "/", ""},
		{"198.51.100.1", "STAGING.shop.example", "/", "hostname"},
		{"198.51.100.1", "a.test.shop.example", "/", "hostname"},
		{"198.51.100.1", "test.shop.example", "/", ""},
		{"198.51.100.1", "shop.example", "/admin/users", "path"},
		{"198.51.100.1", "shop.example", "/preview", "path"},
		{"198.51.100.1", "shop.example", "/preview/x", ""},
	} {
		if got := c.Excluded(netip.MustParseAddr(tc.ip), tc.host, tc.path); got != tc.want {
			t.Errorf("Excluded(%s, %q, %q) = %q; want %q", tc.ip, tc.host, tc.path, got, tc.want)
		}
	}
	if got := s.For("blog").Excluded(netip.MustParseAddr("10.0.0.1"), "x", "/"); got != "" {
		t.Errorf("client without rules: Excluded = %q; want none", got)
	}
	if id, ok := s.ServerKey("srv_secret"); !ok || id != "shop" {
		t.Errorf("ServerKey(srv_secret) = %q, %v; want shop", id, ok)
	}
	if _, ok := s.ServerKey(registry.HashAPIKey("srv_secret")); ok {
		t.Error("ServerKey(hash) matched; the stored hash must not work as a key")
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"bad cidr", "clients: {a: {exclude: {ip_ranges: [10.0.0.0/99]}}}", "exclude.ip_ranges"},
		{"relative path", "clients: {a: {exclude: {paths: [admin]}}}", "exclude.paths"},
		{"host with scheme", "clients: {a: {exclude: {hostnames: ['https://a']}}}", "exclude.hostnames"},
		{"plain key", "clients: {a: {server_key_hashes: [secret]}}", "sha256:"},
		{"misspelt", "clients: {a: {exclud: {}}}", "exclud"},
		{"negative rate", "clients: {a: {rate_limit_per_second: -1}}", "must not be negative"},
	} {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := Parse(nil); err != nil {
		t.Errorf("Parse(empty) = %v; want no rules and no error", err)
	}
}

func TestWatchReloadsAndKeepsLastGoodVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("clients: {a: {rate_limit_per_second: 1}}\n")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, 10*time.Millisecond, zap.NewNop())
	write("clients: {a: {rate_limit_per_second: 7}}\n")
	deadline := time.Now().Add(5 * time.Second)
	for s.For("a").RateLimitPerSecond != 7 {
		if time.Now().After(deadline) {
			t.Fatal("rules not reloaded within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	write("clients: {a: {rate_limit_per_second: -1}}\n")
	time.Sleep(100 * time.Millisecond)
	if got := s.For("a").RateLimitPerSecond; got != 7 {
		t.Errorf("after an invalid edit, rate = %v; want the last good 7", got)
	}
}
