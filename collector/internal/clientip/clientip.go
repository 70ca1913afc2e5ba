// Package clientip finds a request's client address behind load balancers
// and reverse proxies, trusting forwarding headers only from known proxies.
package clientip

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// Resolver picks the visitor's address from the direct peer and the
// X-Forwarded-For / X-Real-IP headers. The zero Resolver trusts no proxy and
// always answers the peer: a header anyone can send is never believed unless
// the peer that sent it is one of ours.
type Resolver struct {
	trusted []netip.Prefix
}

// Parse builds a Resolver from CIDRs or bare addresses separated by commas
// ("10.0.0.0/8, 192.168.1.7"). An empty list trusts nobody.
func Parse(list string) (*Resolver, error) {
	r := &Resolver{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := registry.ParseIPRange(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

// Trusted reports whether addr is one of the configured proxies.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the visitor's address. When the peer is a trusted proxy,
// X-Forwarded-For is walked from the right (the entry our own proxy
// appended) to the left, skipping trusted proxies; the first untrusted
// address is the client, since everything left of it was written by the
// client itself and may be forged. Without X-Forwarded-For, X-Real-IP of a
// trusted peer is used. Unparsable entries stop the walk at the last good
// address.
func (r *Resolver) ClientIP(peer netip.Addr, xff, xRealIP string) netip.Addr {
	peer = peer.Unmap()
	if !r.Trusted(peer) {
		return peer
	}
	if xff != "" {
		client := peer
		for rest := xff; rest != ""; {
			var entry string
			if i := strings.LastIndexByte(rest, ','); i >= 0 {
				entry, rest = rest[i+1:], rest[:i]
			} else {
				entry, rest = rest, ""
			}
			a, err := parseEntry(entry)
			if err != nil {
				return client
			}
			client = a
			if !r.Trusted(a) {
				return a
			}
		}
		return client
	}
	if xRealIP != "" {
		if a, err := parseEntry(xRealIP); err == nil {
			return a
		}
	}
	return peer
}

// parseEntry reads one address of a forwarding header, which some proxies
// write with a port ("203.0.113.9:4711", "[2001:db8::1]:80").
func parseEntry(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}
