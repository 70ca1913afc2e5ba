// Package session groups a visitor's events into visits: a new session
// after 30 minutes without events or when the visitor arrives from a new
// campaign or referrer source; it also tells new from returning visitors.
// State lives in memory, bounded, and in a compacted Kafka topic with one
// partition per raw-topic partition, from which an instance that takes
// over a partition rebuilds it.
package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/maypok86/otter/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/enricher/internal/kafkastate"
)

// State is what is kept per visitor.
type State struct {
	SessionID uint64
	// Start and Last are the first and latest event times of the current
	// session (Unix milliseconds).
	Start, Last int64
	// PreviousStart is the start of the visitor's previous session; 0 if
	// this is the first one.
	PreviousStart int64
	// Source is the campaign or referrer source the session began with.
	Source string
	// Seen are the outcomes of the visitor's latest events (at most
	// maxSeen, oldest first), so that an event met again (a replayed batch,
	// a retry) learns what it learned the first time.
	Seen []Seen
}

// Seen is what one event, by the hash of its event id, learned.
type Seen struct {
	Event   uint64
	Outcome Outcome
}

// maxSeen bounds the events remembered per visitor: a replay reaches back
// to the last commit, a batch or a few, far fewer than this per visitor.
const maxSeen = 64

// Outcome is what an event learns from its visitor's state.
type Outcome struct {
	SessionID       uint64
	NewVisitor      bool
	PreviousVisitMs int64
}

// Config tunes a Tracker.
type Config struct {
	// Kafka holds the connection options: brokers, TLS, SASL.
	Kafka []kgo.Opt
	// Topic is the compacted state topic.
	Topic string
	// Timeout ends a session after this long without events (30 minutes).
	Timeout time.Duration
	// MaxVisitors bounds the visitors held in memory; the least recently
	// seen are forgotten first (and then start as new visitors).
	MaxVisitors int
	// TTL is how long a visitor's state is kept after their last event.
	TTL time.Duration
}

// Tracker holds session state; safe for use from one pipeline goroutine
// at a time per partition.
type Tracker struct {
	cfg   Config
	cl    *kgo.Client
	log   *zap.Logger
	state *otter.Cache[string, State]

	mu sync.Mutex
	// next is the raw-topic offset each loaded partition expects next; a
	// gap means another instance processed the partition meanwhile, so
	// the state is reloaded.
	next  map[int32]int64
	dirty map[int32]map[string]State
}

// ErrTooFewPartitions is Open's configuration error: the state topic has
// fewer partitions than the raw topic. Waiting does not fix it.
var ErrTooFewPartitions = errors.New("too few partitions")

// Open connects a Tracker and creates the state topic with partitions
// partitions (as many as the raw topic has) when it is missing.
func Open(ctx context.Context, cfg Config, partitions int32, replication int16, log *zap.Logger) (*Tracker, error) {
	cl, err := kgo.NewClient(append(cfg.Kafka[:len(cfg.Kafka):len(cfg.Kafka)],
		kgo.DefaultProduceTopic(cfg.Topic),
		// State goes to the partition of the raw hit it came from, so
		// the instance owning that raw partition finds it.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Offsets of the raw topic are committed after these writes.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to kafka: %w", err)
	}
	retention := strconv.FormatInt(cfg.TTL.Milliseconds(), 10)
	if err := kafkastate.EnsureCompacted(ctx, cl, cfg.Topic, partitions, max(replication, 1), map[string]string{
		// Compacted, and segments older than the TTL are deleted too,
		// so visitors who never come back do not stay forever.
		"cleanup.policy": "compact,delete",
		"retention.ms":   retention,
	}); err != nil {
		cl.Close()
		return nil, err
	}
	topics, err := kadm.NewClient(cl).ListTopics(ctx, cfg.Topic)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("describing %s: %w", cfg.Topic, err)
	}
	if have := len(topics[cfg.Topic].Partitions); have < int(partitions) {
		cl.Close()
		return nil, fmt.Errorf("%w: session state topic %s has %d partitions; the raw topic has %d: add partitions to it", ErrTooFewPartitions, cfg.Topic, have, partitions)
	}
	cache, err := otter.New(&otter.Options[string, State]{MaximumSize: cfg.MaxVisitors})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &Tracker{cfg: cfg, cl: cl, log: log, state: cache, next: map[int32]int64{}, dirty: map[int32]map[string]State{}}, nil
}

// loadTimeout bounds the rebuild of one partition's state.
const loadTimeout = 2 * time.Minute

// Prepare makes sure the state of raw partition p is loaded before the
// record at offset is applied.
func (t *Tracker) Prepare(ctx context.Context, p int32, offset int64) error {
	t.mu.Lock()
	next, ok := t.next[p]
	t.mu.Unlock()
	if ok && offset <= next {
		// offset < next is a replay of a batch whose commit failed: the
		// state already holds it, and Apply answers its events as the
		// first time.
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	n := 0
	err := kafkastate.ReadPartition(ctx, t.cfg.Kafka, t.cfg.Topic, p, func(r *kgo.Record) {
		key := string(r.Key)
		if r.Value == nil {
			t.state.Invalidate(key)
			return
		}
		s, err := decode(r.Value)
		if err != nil {
			t.log.Warn("skipping undecodable session state", zap.String("key", key), zap.Error(err))
			return
		}
		if time.Since(time.UnixMilli(s.Last)) > t.cfg.TTL {
			return
		}
		t.state.Set(key, s)
		n++
	})
	if err != nil {
		return fmt.Errorf("loading session state of partition %d: %w", p, err)
	}
	t.log.Info("loaded session state", zap.Int32("partition", p), zap.Int("visitors", n), zap.Duration("took", time.Since(start)))
	t.mu.Lock()
	t.next[p] = offset
	t.mu.Unlock()
	return nil
}

// Apply records the event eventID of visitor key at time at (Unix
// milliseconds), read from raw partition p at offset, that arrived from
// source ("" when it names none: direct or internal traffic). An event the
// visitor's state has seen before gets the outcome it got then and changes
// nothing: a replay after the state was saved, or a second copy of the
// event, must not start a visit or make a new visitor a returning one.
func (t *Tracker) Apply(p int32, offset int64, key, eventID string, at int64, source string) Outcome {
	event := xxhash.Sum64String(eventID)
	s, ok := t.state.GetIfPresent(key)
	for _, seen := range s.Seen {
		if seen.Event == event {
			t.mu.Lock()
			t.next[p] = max(t.next[p], offset+1)
			t.mu.Unlock()
			return seen.Outcome
		}
	}
	var out Outcome
	switch {
	case !ok:
		s = State{Start: at, Last: at, Source: source}
		s.SessionID = sessionID(key, at)
		out.NewVisitor = true
	case at-s.Last > t.cfg.Timeout.Milliseconds() || (source != "" && source != s.Source):
		s = State{Start: at, Last: at, PreviousStart: s.Start, Source: source, Seen: s.Seen}
		s.SessionID = sessionID(key, at)
	default:
		// Events out of order keep the session's latest time.
		s.Last = max(s.Last, at)
		out.NewVisitor = s.PreviousStart == 0
	}
	out.SessionID, out.PreviousVisitMs = s.SessionID, s.PreviousStart
	// A new slice: earlier States (in the cache, or waiting to be flushed)
	// may share the old one's array.
	keep := s.Seen[max(len(s.Seen)-(maxSeen-1), 0):]
	s.Seen = append(append(make([]Seen, 0, len(keep)+1), keep...), Seen{Event: event, Outcome: out})
	t.state.Set(key, s)
	t.mu.Lock()
	if t.dirty[p] == nil {
		t.dirty[p] = map[string]State{}
	}
	t.dirty[p][key] = s
	t.next[p] = max(t.next[p], offset+1)
	t.mu.Unlock()
	return out
}

// Skip records that the hit at offset of partition p changed no state (a
// bot dropped, a dead letter, a child-directed client's event), so that
// the next hit does not take the offset it left out for a gap, which would
// reload the partition's state. It moves only a loaded partition's next
// offset, and only from offset itself: after a real gap, Prepare must
// still reload.
func (t *Tracker) Skip(p int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if next, ok := t.next[p]; ok && next == offset {
		t.next[p] = offset + 1
	}
}

// sessionID is derived, not random, so a replayed hit gets the session id
// it got the first time.
func sessionID(key string, start int64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(start))
	h := xxhash.New()
	_, _ = h.WriteString(key) // xxhash writes never fail
	_, _ = h.Write(b[:])
	return h.Sum64()
}

// Flush writes the state changed since the last Flush, each visitor's
// latest only, and waits until Kafka acknowledged it.
func (t *Tracker) Flush(ctx context.Context) error {
	t.mu.Lock()
	dirty := t.dirty
	t.dirty = map[int32]map[string]State{}
	t.mu.Unlock()
	return t.flush(ctx, dirty)
}

// FlushPartitions is Flush for the state of raw partitions ps only: a
// pipeline that commits some partitions' offsets must wait for their
// state, not for state another goroutine is writing.
func (t *Tracker) FlushPartitions(ctx context.Context, ps []int32) error {
	t.mu.Lock()
	dirty := make(map[int32]map[string]State, len(ps))
	for _, p := range ps {
		if d := t.dirty[p]; d != nil {
			dirty[p] = d
			delete(t.dirty, p)
		}
	}
	t.mu.Unlock()
	return t.flush(ctx, dirty)
}

func (t *Tracker) flush(ctx context.Context, dirty map[int32]map[string]State) error {
	var recs []*kgo.Record
	for p, states := range dirty {
		for key, s := range states {
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: encode(s), Partition: p})
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := t.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		// Put the changes back so the next flush retries them.
		t.mu.Lock()
		for p, states := range dirty {
			for key, s := range states {
				if t.dirty[p] == nil {
					t.dirty[p] = map[string]State{}
				}
				if _, newer := t.dirty[p][key]; !newer {
					t.dirty[p][key] = s
				}
			}
		}
		t.mu.Unlock()
		return fmt.Errorf("writing session state: %w", err)
	}
	return nil
}

// Close disconnects.
func (t *Tracker) Close() { t.cl.Close() }

// stateVersion 2 added the events seen; version 1 states still decode
// (with none).
const stateVersion = 2

const seenSize = 8 + 8 + 8 + 1

// encode is a small fixed layout: version, session id, start, last,
// previous start, source length and source, then the number of events seen
// and each one's event hash, session id, previous visit and new-visitor
// flag.
func encode(s State) []byte {
	src := s.Source[:min(len(s.Source), 1<<16-1)]
	b := make([]byte, 0, 1+8*4+2+len(src)+2+seenSize*len(s.Seen))
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, s.SessionID)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Start))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Last))
	b = binary.BigEndian.AppendUint64(b, uint64(s.PreviousStart))
	b = binary.BigEndian.AppendUint16(b, uint16(len(src)))
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Seen)))
	for _, e := range s.Seen {
		b = binary.BigEndian.AppendUint64(b, e.Event)
		b = binary.BigEndian.AppendUint64(b, e.Outcome.SessionID)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Outcome.PreviousVisitMs))
		newVisitor := byte(0)
		if e.Outcome.NewVisitor {
			newVisitor = 1
		}
		b = append(b, newVisitor)
	}
	return b
}

var errBadState = errors.New("malformed session state")

func decode(b []byte) (State, error) {
	if len(b) < 1+8*4+2 || (b[0] != 1 && b[0] != stateVersion) {
		return State{}, errBadState
	}
	var s State
	s.SessionID = binary.BigEndian.Uint64(b[1:])
	s.Start = int64(binary.BigEndian.Uint64(b[9:]))
	s.Last = int64(binary.BigEndian.Uint64(b[17:]))
	s.PreviousStart = int64(binary.BigEndian.Uint64(b[25:]))
	n := int(binary.BigEndian.Uint16(b[33:]))
	if b[0] == 1 {
		if len(b) != 35+n {
			return State{}, errBadState
		}
		s.Source = string(b[35:])
		return s, nil
	}
	if len(b) < 35+n+2 {
		return State{}, errBadState
	}
	s.Source = string(b[35 : 35+n])
	rest := b[35+n:]
	m := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != m*seenSize {
		return State{}, errBadState
	}
	if m > 0 {
		s.Seen = make([]Seen, m)
	}
	for i := range s.Seen {
		e := rest[i*seenSize:]
		s.Seen[i] = Seen{Event: binary.BigEndian.Uint64(e), Outcome: Outcome{
			SessionID:       binary.BigEndian.Uint64(e[8:]),
			PreviousVisitMs: int64(binary.BigEndian.Uint64(e[16:])),
			NewVisitor:      e[24] == 1,
		}}
	}
	return s, nil
}
