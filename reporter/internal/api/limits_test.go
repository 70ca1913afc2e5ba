package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// from sends a GET with key from the client address addr.
func from(t *testing.T, h http.Handler, addr, target, key string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = addr
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

// TestFailedAuthLimitedPerAddress: distinct wrong keys from one address
// get 401 until the address's budget is spent, then 429 for every key,
// the right one too; another address is not affected, nor is the IPv6
// neighbour outside the /64.
func TestFailedAuthLimitedPerAddress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthFailureRate, c.AuthFailureBurst = 0.01, 3 })
	for _, addr := range []string{"198.51.100.7:4000", "[2001:db8:1:2::5]:4000"} {
		for i := range 3 {
			if code, _, body := from(t, e.h, addr, RealtimePath, fmt.Sprintf("alm_guess_%d", i)); code != http.StatusUnauthorized {
				t.Fatalf("%s: wrong key %d = %d %s; want 401 within the budget", addr, i, code, body)
			}
		}
		code, h, body := from(t, e.h, addr, RealtimePath, "alm_guess_next")
		if code != http.StatusTooManyRequests || h.Get("Retry-After") != "100" || !strings.Contains(body, "too many failed authentications") {
			t.Errorf("%s: wrong key after the budget = %d Retry-After %q %s; want 429 Retry-After 100", addr, code, h.Get("Retry-After"), body)
		}
		if code, _, body := from(t, e.h, addr, RealtimePath, shopKey); code != http.StatusTooManyRequests {
			t.Errorf("%s: right key after the budget = %d %s; want 429 (a right guess must look like a wrong one)", addr, code, body)
		}
	}
	for _, addr := range []string{"198.51.100.8:4000", "[2001:db8:1:3::5]:4000"} {
		if code, _, body := from(t, e.h, addr, RealtimePath, shopKey); code != http.StatusOK {
			t.Errorf("right key from another address %s = %d %s; want 200", addr, code, body)
		}
	}
	if code, _, body := from(t, e.h, "[2001:db8:1:2::99]:1", RealtimePath, shopKey); code != http.StatusTooManyRequests {
		t.Errorf("right key from the same IPv6 /64 = %d %s; want 429", code, body)
	}
	// The operator endpoints count wrong operator keys the same way.
	for i := range 3 {
		if code, _, body := from(t, e.h, "198.51.100.9:1", OpTrendsPath, fmt.Sprintf("alm_op_%d", i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong operator key %d = %d %s; want 401", i, code, body)
		}
	}
	if code, _, body := from(t, e.h, "198.51.100.9:1", OpTrendsPath, operatorKey); code != http.StatusTooManyRequests {
		t.Errorf("operator key after 3 wrong ones = %d %s; want 429", code, body)
	}
}

// TestLimiterTablesBounded: a flood of distinct addresses leaves at most
// LimiterEntries buckets behind.
func TestLimiterTablesBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LimiterEntries = 100 })
	for i := range 2000 {
		from(t, e.h, fmt.Sprintf("10.%d.%d.1:1", i/256, i%256), RealtimePath, "alm_wrong")
	}
	e.h.limits.authFailures.table.CleanUp()
	if n := e.h.limits.authFailures.table.EstimatedSize(); n > 100 {
		t.Errorf("failed-auth buckets after 2000 addresses = %d; want at most 100", n)
	}
}
