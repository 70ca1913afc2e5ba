// Package visitor derives private visitor ids: keyed hashes scoped to one
// client, so the same person on two clients' sites gets unrelated ids, and
// in cookieless mode also scoped to one day by a random salt that is
// destroyed after its day.
package visitor

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"
	"time"
)

// Salts gives the random salt of a UTC day (see SaltStore).
type Salts interface {
	Salt(day time.Time) ([]byte, error)
}

// Hasher makes visitor ids.
//
// Cookie ids are HMAC-SHA256 under the secret, so they stay stable for as
// long as the cookie does. Cookieless ids are HMAC-SHA256 under a key made
// from the secret and the day's random salt: once the salt is destroyed
// nobody, not even whoever holds the secret, can recompute a past day's
// ids from an IP address and user agent; and whoever reads a salt from
// Kafka still lacks the secret.
type Hasher struct {
	key   []byte
	salts Salts
	// today caches the MAC state keyed for the latest day asked for:
	// keying HMAC costs as much as the hash itself.
	today atomic.Pointer[dayMACs]
}

// dayMACs are reusable HMACs keyed for one day's salt.
type dayMACs struct {
	salt []byte // the salt the key was made from
	pool sync.Pool
}

// New returns a Hasher keyed with secret that takes daily salts from salts.
func New(secret []byte, salts Salts) *Hasher {
	return &Hasher{key: append([]byte(nil), secret...), salts: salts}
}

// Cookie is the id of a visitor known by a first-party cookie.
func (h *Hasher) Cookie(clientID, cookieID string) uint64 {
	return sum(h.key, "c", clientID, cookieID)
}

// Cookieless is the id of a visitor known only by IP and user agent on the
// UTC day of at.
func (h *Hasher) Cookieless(clientID string, ip []byte, userAgent string, at time.Time) (uint64, error) {
	salt, err := h.salts.Salt(at)
	if err != nil {
		return 0, err
	}
	d := h.today.Load()
	if d == nil || !bytes.Equal(d.salt, salt) {
		derive := hmac.New(sha256.New, h.key)
		derive.Write(salt)
		key := derive.Sum(nil)
		d = &dayMACs{salt: bytes.Clone(salt)}
		d.pool.New = func() any { return hmac.New(sha256.New, key) }
		h.today.Store(d)
	}
	mac := d.pool.Get().(hash.Hash)
	mac.Reset()
	id := write(mac, "d", clientID, string(ip), userAgent)
	d.pool.Put(mac)
	return id, nil
}

// sum is HMAC-SHA256 over length-prefixed parts (so "ab"+"c" and "a"+"bc"
// differ), truncated to 64 bits: ample for distinct counts per client.
func sum(key []byte, parts ...string) uint64 {
	return write(hmac.New(sha256.New, key), parts...)
}

func write(mac hash.Hash, parts ...string) uint64 {
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		mac.Write(n[:])
		mac.Write([]byte(p))
	}
	var out [sha256.Size]byte
	return binary.BigEndian.Uint64(mac.Sum(out[:0]))
}
