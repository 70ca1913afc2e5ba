package sink

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// committer commits the offsets of stored batches on a goroutine of its
// own, so the next insert need not wait for the group coordinator.
// Offsets handed over while a commit is in flight are merged (the latest
// offset of each partition wins) and committed together next.
type committer struct {
	s       *Sink
	mu      sync.Mutex
	pending map[int]int64 // offsets stored and not yet committed
	wake    chan struct{}
	done    chan struct{}
	quit    chan context.Context
	once    sync.Once
}

// newCommitter starts a committer whose commits end with ctx.
func newCommitter(ctx context.Context, s *Sink) *committer {
	c := &committer{s: s, wake: make(chan struct{}, 1), done: make(chan struct{}), quit: make(chan context.Context)}
	go c.run(ctx)
	return c
}

// add hands over the offsets of a batch whose rows and dead letters are
// stored.
func (c *committer) add(next map[int]int64) {
	if len(next) == 0 {
		return
	}
	c.mu.Lock()
	if c.pending == nil {
		c.pending = make(map[int]int64, len(next))
	}
	for p, o := range next {
		c.pending[p] = max(c.pending[p], o)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already waiting
	}
}

func (c *committer) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
			c.commit(ctx)
		case ctx := <-c.quit:
			c.commit(ctx)
			return
		}
	}
}

// commit commits what is pending, if anything.
func (c *committer) commit(ctx context.Context) {
	c.mu.Lock()
	next := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(next) == 0 {
		return
	}
	if err := c.s.reader.CommitOffsets(ctx, next); err != nil {
		// The rows are stored; the records come back after a restart or
		// rebalance and are deduplicated then, and the next commit on the
		// same partitions covers these offsets too. Not worth stopping for.
		c.s.m.commitFailures.Inc()
		c.s.log.Warn("committing offsets failed; the records will be replayed and deduplicated",
			zap.Int("partitions", len(next)), zap.Error(err))
	}
}

// stop makes the last commit, of everything handed over, within ctx, and
// returns once it is done. Calls after the first one only wait.
func (c *committer) stop(ctx context.Context) {
	c.once.Do(func() { c.quit <- ctx })
	<-c.done
}
