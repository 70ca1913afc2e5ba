package kafkagroup

import (
	"context"
	"sync"
)

// Committer commits offsets on a goroutine of its own, so that the next
// batch's work need not wait for the group coordinator. Offsets handed
// over while a commit is in flight are merged (the latest offset of each
// partition wins) and committed together next. A consumer hands over the
// offsets of a batch only once its output is durable.
type Committer struct {
	commit  func(ctx context.Context, next map[int]int64) error
	failed  func(err error, partitions int)
	mu      sync.Mutex
	pending map[int]int64 // offsets stored and not yet committed
	wake    chan struct{}
	done    chan struct{}
	quit    chan context.Context
	once    sync.Once
}

// NewCommitter starts a committer that commits through commit
// (Reader.CommitOffsets), its commits ending with ctx, and calls failed
// when a commit fails: the records are then replayed by their next owner
// unless a later commit covers them.
func NewCommitter(ctx context.Context, commit func(ctx context.Context, next map[int]int64) error, failed func(err error, partitions int)) *Committer {
	c := &Committer{commit: commit, failed: failed, wake: make(chan struct{}, 1), done: make(chan struct{}), quit: make(chan context.Context)}
	go c.run(ctx)
	return c
}

// Add hands over offsets to commit: partition → offset of the next record
// to read. It does not wait for the commit.
func (c *Committer) Add(next map[int]int64) {
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

func (c *Committer) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
			c.commitPending(ctx)
		case ctx := <-c.quit:
			c.commitPending(ctx)
			return
		}
	}
}

// commitPending commits what is pending, if anything.
func (c *Committer) commitPending(ctx context.Context) {
	c.mu.Lock()
	next := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(next) == 0 {
		return
	}
	if err := c.commit(ctx, next); err != nil {
		c.failed(err, len(next))
	}
}

// Stop makes the last commit, of everything handed over, within ctx, and
// returns once it is done. Calls after the first one only wait.
func (c *Committer) Stop(ctx context.Context) {
	c.once.Do(func() { c.quit <- ctx })
	<-c.done
}
