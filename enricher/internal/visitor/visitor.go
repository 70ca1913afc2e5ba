// Package visitor derives private visitor ids: keyed hashes scoped to one
// client, so the same person on two clients' sites gets unrelated ids.
package visitor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Hasher makes visitor ids from a secret key.
//
// Cookieless ids mix in the UTC day, so a visitor cannot be followed across
// days. The day is derived from the secret here; the enricher issue replaces
// it with random daily salts that are destroyed after their day, so that old
// ids cannot be recomputed even by whoever holds the secret.
type Hasher struct {
	key []byte
}

// New returns a Hasher keyed with secret.
func New(secret []byte) *Hasher {
	return &Hasher{key: append([]byte(nil), secret...)}
}

// Cookie is the id of a visitor known by a first-party cookie.
func (h *Hasher) Cookie(clientID, cookieID string) uint64 {
	return h.sum("c", clientID, cookieID)
}

// Cookieless is the id of a visitor known only by IP and user agent on day.
func (h *Hasher) Cookieless(clientID string, ip []byte, userAgent string, day time.Time) uint64 {
	return h.sum("d", clientID, day.UTC().Format(time.DateOnly), string(ip), userAgent)
}

// sum is HMAC-SHA256 over length-prefixed parts (so "ab"+"c" and "a"+"bc"
// differ), truncated to 64 bits: ample for distinct counts per client.
func (h *Hasher) sum(parts ...string) uint64 {
	mac := hmac.New(sha256.New, h.key)
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		mac.Write(n[:])
		mac.Write([]byte(p))
	}
	return binary.BigEndian.Uint64(mac.Sum(nil))
}
