package clientip

import (
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	r, err := Parse("10.0.0.0/8, 192.168.1.7, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, xff, xrip, want string
	}{
		{"203.0.113.5", "", "", "203.0.113.5"},
		{"203.0.113.5", "1.2.3.4", "5.6.7.8", "203.0.113.5"},                // untrusted peer: headers ignored
		{"10.1.2.3", "198.51.100.7", "", "198.51.100.7"},                    // one proxy
		{"10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", "", "198.51.100.7"}, // forged left entry skipped
		{"10.1.2.3", "10.0.0.1, 192.168.1.7", "", "10.0.0.1"},               // all trusted: leftmost
		{"10.1.2.3", "garbage, 198.51.100.7", "", "198.51.100.7"},           // walk stops before garbage
		{"10.1.2.3", "198.51.100.7, garbage", "", "10.1.2.3"},               // our proxy wrote garbage: the peer
		{"10.1.2.3", "198.51.100.7:4711", "", "198.51.100.7"},
		{"10.1.2.3", "", "198.51.100.8", "198.51.100.8"},
		{"10.1.2.3", "", "nonsense", "10.1.2.3"},
		{"2001:db8:ffff::1", "[2001:db8::5]:443", "", "2001:db8::5"},
		{"::ffff:10.1.2.3", "198.51.100.7", "", "198.51.100.7"}, // v4-mapped peer
	} {
		got := r.ClientIP(netip.MustParseAddr(tc.peer), tc.xff, tc.xrip)
		if got.String() != tc.want {
			t.Errorf("ClientIP(%s, %q, %q) = %s; want %s", tc.peer, tc.xff, tc.xrip, got, tc.want)
		}
	}
	var none Resolver
	if got := none.ClientIP(netip.MustParseAddr("10.1.2.3"), "1.2.3.4", ""); got.String() != "10.1.2.3" {
		t.Errorf("zero Resolver: ClientIP = %s; want the peer", got)
	}
	if _, err := Parse("10.0.0.0/33"); err == nil {
		t.Error(`Parse("10.0.0.0/33") = nil error; want one`)
	}
}
