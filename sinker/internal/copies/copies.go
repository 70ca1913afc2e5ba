// Package copies decides which copy of an event the sinker stores: the
// first one in its partition of the enriched topic, where the enricher
// puts every copy of one client's event id (they are keyed by both).
//
// Copies of one event can differ (a retry from another address has
// another cookieless visitor id, a retry without its cookie another
// cookie), so the events table cannot be left to collapse them: its
// sorting key holds the visitor's sample key. Storing only the first copy
// keeps counts right, and the choice is a function of the partition's log
// alone, so every sinker, replay and rebuild makes the same one.
package copies

import (
	"context"

	"github.com/cespare/xxhash/v2"
)

// Loader calls fn for each record of partition at offsets [from, to) that
// holds a storable event (one with a client and event id), in offset order.
// It starts at the partition's oldest record when from is older.
type Loader func(ctx context.Context, partition int, from, to int64, fn func(offset int64, clientID, eventID string)) error

// Window remembers, per partition, the first offset of each event among
// the partition's latest Size events. Used by one goroutine (the sink's
// batch loop).
type Window struct {
	size  int
	load  Loader
	parts map[int]*partition
}

// partition is the window of one partition.
type partition struct {
	next  int64            // the offset expected next
	first map[uint64]int64 // event → offset of its first copy
	ring  []uint64         // events in the order first seen, oldest at head once full
	head  int
}

// New returns a window of size events per partition that rebuilds a
// partition's window with load when it meets the partition at an offset
// it has not read up to (a new assignment, or one that moved back).
func New(size int, load Loader) *Window {
	return &Window{size: max(size, 1), load: load, parts: map[int]*partition{}}
}

func key(clientID, eventID string) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(clientID) // xxhash writes never fail
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(eventID)
	return h.Sum64()
}

// First reports whether the record at offset of partition is the first
// copy of the client's event: false means an earlier record of the
// partition holds the same client and event id, and this one is not to be
// stored. A replayed record gets the answer it got the first time.
func (w *Window) First(ctx context.Context, part int, offset int64, clientID, eventID string) (bool, error) {
	p, err := w.at(ctx, part, offset)
	if err != nil {
		return false, err
	}
	k := key(clientID, eventID)
	if offset < p.next { // a replay
		if at, ok := p.first[k]; ok {
			return at == offset, nil
		}
		return true, nil // older than the window
	}
	p.next = offset + 1
	return p.record(k, offset, w.size), nil
}

// Skip moves past a record that holds no storable event.
func (w *Window) Skip(ctx context.Context, part int, offset int64) error {
	p, err := w.at(ctx, part, offset)
	if err != nil {
		return err
	}
	p.next = max(p.next, offset+1)
	return nil
}

// at returns partition part's window, rebuilt from the log when offset is
// beyond what this window has read.
func (w *Window) at(ctx context.Context, part int, offset int64) (*partition, error) {
	if p := w.parts[part]; p != nil && offset <= p.next {
		return p, nil
	}
	p := &partition{first: map[uint64]int64{}}
	err := w.load(ctx, part, max(offset-int64(w.size), 0), offset, func(at int64, clientID, eventID string) {
		p.record(key(clientID, eventID), at, w.size)
	})
	if err != nil {
		delete(w.parts, part)
		return nil, err
	}
	p.next = offset
	w.parts[part] = p
	return p, nil
}

// record notes event k at offset and reports whether it is the first copy.
func (p *partition) record(k uint64, offset int64, size int) bool {
	if at, ok := p.first[k]; ok {
		return at == offset
	}
	if len(p.ring) < size {
		p.ring = append(p.ring, k)
	} else {
		delete(p.first, p.ring[p.head])
		p.ring[p.head] = k
		p.head = (p.head + 1) % size
	}
	p.first[k] = offset
	return true
}
