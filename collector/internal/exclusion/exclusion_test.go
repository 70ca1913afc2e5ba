package exclusion

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
)

func openRegistry(t *testing.T, path, doc string) *registry.File {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func client(t *testing.T, reg registry.Registry, id string) *registry.Client {
	t.Helper()
	c, err := reg.ByID(id)
	if err != nil {
		t.Fatalf("ByID(%s) = %v", id, err)
	}
	return c
}

func TestExcluded(t *testing.T) {
	reg := openRegistry(t, filepath.Join(t.TempDir(), "clients.yaml"), `
clients:
  - id: shop
    exclude:
      ip_ranges: [10.0.0.0/8, 203.0.113.7, "2001:db8::/32"]
      hostnames: [staging.shop.example, "*.test.shop.example"]
      paths: [/admin/*, /preview]
  - id: office
    exclude:
      ip_ranges: [192.0.2.0/24]
  - id: blog
`)
	cache := NewCache(reg)
	shop := cache.For(client(t, reg, "shop"))
	for _, tc := range []struct{ ip, url, want string }{
		{"10.3.4.5", "https://shop.example/", "ip"},
		{"::ffff:10.3.4.5", "https://shop.example/", "ip"},
		{"203.0.113.7", "https://shop.example/", "ip"},
		{"203.0.113.8", "https://shop.example/", ""},
		{"2001:db8::99", "https://shop.example/", "ip"},
		{"198.51.100.1", "https://STAGING.shop.example/", "hostname"},
		{"198.51.100.1", "https://staging.shop.example:8443/x", "hostname"},
		{"198.51.100.1", "https://a.test.shop.example/", "hostname"},
		{"198.51.100.1", "https://test.shop.example/", ""},
		{"198.51.100.1", "https://xtest.shop.example/", ""},
		{"198.51.100.1", "https://shop.example/admin/users", "path"},
		{"198.51.100.1", "https://shop.example/admin/", "path"},
		{"198.51.100.1", "https://shop.example/admin", ""},
		{"198.51.100.1", "https://shop.example/preview?utm_source=x", "path"},
		{"198.51.100.1", "https://shop.example/preview/x", ""},
		{"198.51.100.1", "https://shop.example", ""},
		{"198.51.100.1", "", ""},
	} {
		if got := shop.Excluded(netip.MustParseAddr(tc.ip), tc.url); got != tc.want {
			t.Errorf("shop: Excluded(%s, %q) = %q; want %q", tc.ip, tc.url, got, tc.want)
		}
	}
	if got := shop.Excluded(netip.Addr{}, "https://shop.example/admin/x"); got != "path" {
		t.Errorf("shop: Excluded(no ip, /admin/x) = %q; want path", got)
	}
	office := cache.For(client(t, reg, "office"))
	if got := office.Excluded(netip.MustParseAddr("192.0.2.9"), "https://office.example/"); got != "ip" {
		t.Errorf("office: Excluded(192.0.2.9) = %q; want ip", got)
	}
	if got := office.Excluded(netip.MustParseAddr("198.51.100.1"), "https://office.example/admin/"); got != "" {
		t.Errorf("office: Excluded(198.51.100.1, /admin/) = %q; want none (only shop excludes /admin/*)", got)
	}
	if m := cache.For(client(t, reg, "blog")); m != nil {
		t.Errorf("For(blog) = %+v; want nil for a client without exclusions", m)
	}
	var none *Matcher
	if got := none.Excluded(netip.MustParseAddr("10.0.0.1"), "https://x.example/admin/"); got != "" {
		t.Errorf("nil Matcher: Excluded = %q; want none", got)
	}
}

// The matchers are compiled once per registry version, follow the
// registry's reloads, and keep the last good version when an edit is bad.
func TestCacheFollowsRegistryVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	reg := openRegistry(t, path, "clients: [{id: a, exclude: {paths: [/one]}}]\n")
	cache := NewCache(reg)
	first := cache.For(client(t, reg, "a"))
	if again := cache.For(client(t, reg, "a")); again != first {
		t.Error("For(a) twice in one registry version compiled twice; want the cached matcher")
	}
	if got := first.Excluded(netip.Addr{}, "https://a.example/one"); got != "path" {
		t.Fatalf("Excluded(/one) = %q; want path", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, logs := observer.New(zap.ErrorLevel)
	go reg.Watch(ctx, 5*time.Millisecond, zap.New(core))
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	excludes := func(p string) bool {
		return cache.For(client(t, reg, "a")).Excluded(netip.Addr{}, "https://a.example"+p) == "path"
	}
	write("clients: [{id: a, exclude: {paths: [/two]}}]\n")
	eventually.True(t, 5*time.Second, "exclusions to follow the registry reload", func() bool { return excludes("/two") })
	if excludes("/one") {
		t.Error("after the reload /one is still excluded; want the new version only")
	}
	for _, bad := range []string{
		"clients: [{id: a, exclude: {paths: [two]}}]\n", // invalid
		"", // truncated mid-write
		"clients:\n",
	} {
		refused := logs.Len()
		write(bad)
		eventually.True(t, 5*time.Second, "the registry watcher to refuse "+strconv.Quote(bad), func() bool { return logs.Len() > refused })
		if !excludes("/two") {
			t.Fatalf("after writing %q, /two is no longer excluded; want the last good version", bad)
		}
	}
}
