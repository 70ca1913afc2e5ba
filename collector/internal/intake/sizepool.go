package intake

import (
	"math/bits"
	"sync"
)

// sizePools pool *T by a power-of-two capacity, 2^i in class i, for what a
// request needs only while it runs (arenas, hit slots): one pool per size,
// so that a small request never takes, and keeps busy, a large one's
// buffers. Capacities past the last class are left to the garbage
// collector.
type sizePools[T any] []sync.Pool

// get returns a pooled value for at least n, or nil and the capacity to
// make one with: n rounded up to its class, or n itself past the classes.
func (p sizePools[T]) get(n int) (*T, int) {
	i := bits.Len(uint(max(n, 1) - 1))
	if i >= len(p) {
		return nil, n
	}
	v, _ := p[i].Get().(*T)
	return v, 1 << i
}

// put pools v, whose capacity is c; a c that is no class's is dropped.
func (p sizePools[T]) put(v *T, c int) {
	if i := bits.Len(uint(c - 1)); c > 0 && i < len(p) && c == 1<<i {
		p[i].Put(v)
	}
}
