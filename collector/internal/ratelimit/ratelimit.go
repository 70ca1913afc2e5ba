// Package ratelimit keeps one token bucket per key (client id, IP address)
// with a bounded number of keys, so that a flood of distinct keys cannot
// grow memory without limit.
package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const shards = 32

// Keyed is a set of token buckets, one per key.
type Keyed struct {
	seed      maphash.Seed
	maxPerShd int
	shards    [shards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// New returns a Keyed holding at most maxKeys buckets.
func New(maxKeys int) *Keyed {
	k := &Keyed{seed: maphash.MakeSeed(), maxPerShd: max(1, maxKeys/shards)}
	for i := range k.shards {
		k.shards[i].m = make(map[string]*rate.Limiter)
	}
	return k
}

// Allow takes n tokens from key's bucket, which refills at perSecond up to
// burst. When the bucket lacks them it takes nothing and says how long the
// sender should wait. A perSecond of 0 or less means no limit. A request for
// more than burst tokens can never pass and is told to wait for a full
// bucket; callers keep burst at least as large as their largest request.
func (k *Keyed) Allow(key string, perSecond float64, burst, n int, now time.Time) (bool, time.Duration) {
	if perSecond <= 0 {
		return true, 0
	}
	s := &k.shards[maphash.String(k.seed, key)%shards]
	s.mu.Lock()
	lim, ok := s.m[key]
	if !ok {
		if len(s.m) >= k.maxPerShd {
			s.evict(now, k.maxPerShd)
		}
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		s.m[key] = lim
	} else if lim.Limit() != rate.Limit(perSecond) || lim.Burst() != burst {
		// The registry was reloaded with a new limit for this key.
		lim.SetLimitAt(now, rate.Limit(perSecond))
		lim.SetBurstAt(now, burst)
	}
	s.mu.Unlock()

	r := lim.ReserveN(now, n)
	if !r.OK() {
		return false, time.Duration(float64(burst) / perSecond * float64(time.Second))
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// evict drops buckets that refilled completely: they behave exactly like a
// new bucket, so forgetting them loses nothing. If every bucket is busy
// (a flood of distinct keys), arbitrary ones go, which at worst gives some
// keys a fresh bucket early; memory stays bounded either way.
func (s *shard) evict(now time.Time, limit int) {
	for key, lim := range s.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(s.m, key)
		}
	}
	for key := range s.m { // map order is random: no key is favoured.
		if len(s.m) < limit {
			break
		}
		delete(s.m, key)
	}
}

// Len is the number of buckets held, for tests and metrics.
func (k *Keyed) Len() int {
	n := 0
	for i := range k.shards {
		k.shards[i].mu.Lock()
		n += len(k.shards[i].m)
		k.shards[i].mu.Unlock()
	}
	return n
}
