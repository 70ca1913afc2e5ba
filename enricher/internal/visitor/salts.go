package visitor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/enricher/internal/kafkastate"
	"github.com/aluminiapp/pipeline/lib/periodic"
)

// ErrSaltGone means the salt of a day was destroyed: the hit came too late
// (later than the grace period after its day).
var ErrSaltGone = errors.New("the day's salt is destroyed")

// SaltStore keeps one random salt per UTC day in a one-partition compacted
// Kafka topic that every enricher instance reads, and destroys each salt
// when its day (plus a grace period for late hits) is over.
//
// Records are keyed "<day>/<random writer id>". Two instances that need a
// new day's salt at once may both write one; the day's salt is then the
// one written first, the day's record with the lowest offset. An instance
// uses a salt only after reading the topic back past its own write, and
// appends never change which record is first, so every instance picks the
// same one however the writes interleave. Tomorrow's salt is made a day
// ahead by Rotate, so in a running deployment nobody races for it at
// midnight.
type SaltStore struct {
	cl    *kgo.Client
	conn  []kgo.Opt
	topic string
	grace time.Duration
	log   *zap.Logger
	now   func() time.Time

	mu    sync.RWMutex
	salts map[string]saltRecord // by day, the winning record
}

type saltRecord struct {
	key    string
	salt   []byte
	offset int64
}

// SaltConfig sets up a SaltStore.
type SaltConfig struct {
	// Kafka holds the connection options: brokers, TLS, SASL.
	Kafka []kgo.Opt
	Topic string
	// Grace is how long after the end of its UTC day a salt lives on, so
	// that hits delayed in Kafka still get their day's salt.
	Grace       time.Duration
	Replication int16
	// Now is the clock; time.Now when nil (tests move it).
	Now func() time.Time
}

// OpenSaltStore creates the salt topic if needed and loads the live salts.
func OpenSaltStore(ctx context.Context, cfg SaltConfig, log *zap.Logger) (*SaltStore, error) {
	cl, err := kgo.NewClient(append(cfg.Kafka[:len(cfg.Kafka):len(cfg.Kafka)],
		// Salts are tiny and rare; each write must be on every replica
		// before an instance relies on it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DefaultProduceTopic(cfg.Topic),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to kafka: %w", err)
	}
	if err := kafkastate.EnsureCompacted(ctx, cl, cfg.Topic, 1, max(cfg.Replication, 1), nil); err != nil {
		cl.Close()
		return nil, err
	}
	s := &SaltStore{cl: cl, conn: cfg.Kafka, topic: cfg.Topic, grace: cfg.Grace, log: log, now: cfg.Now, salts: map[string]saltRecord{}}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.refresh(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// live reports whether day's salt may still be used at now.
func (s *SaltStore) live(day string, now time.Time) bool {
	start, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return false
	}
	return now.Before(start.Add(24*time.Hour + s.grace))
}

// Salt returns the salt of at's UTC day, creating it when no instance has
// yet. It fails with ErrSaltGone for a day whose salt was destroyed.
func (s *SaltStore) Salt(at time.Time) ([]byte, error) {
	day := dayOf(at)
	s.mu.RLock()
	rec, ok := s.salts[day]
	s.mu.RUnlock()
	if ok {
		return rec.salt, nil
	}
	now := s.now()
	if !s.live(day, now) {
		return nil, fmt.Errorf("%w: %s", ErrSaltGone, day)
	}
	if at.After(now.Add(24 * time.Hour)) {
		// A clock far ahead must not make salts for days to come.
		return nil, fmt.Errorf("no salt for %s: the day has not begun", day)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ensure(ctx, day); err != nil {
		return nil, err
	}
	s.mu.RLock()
	rec, ok = s.salts[day]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("salt of %s missing after writing it", day)
	}
	return rec.salt, nil
}

// ensure writes a salt for day unless one exists, then reloads.
func (s *SaltStore) ensure(ctx context.Context, day string) error {
	if err := s.refresh(ctx); err != nil {
		return err
	}
	s.mu.RLock()
	_, ok := s.salts[day]
	s.mu.RUnlock()
	if ok {
		return nil
	}
	salt := make([]byte, 32)
	writer := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("reading random salt: %w", err)
	}
	if _, err := rand.Read(writer); err != nil {
		return fmt.Errorf("reading random salt: %w", err)
	}
	key := fmt.Sprintf("%s/%x", day, writer)
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: salt}).FirstErr(); err != nil {
		return fmt.Errorf("writing salt of %s: %w", day, err)
	}
	s.log.Info("made a new daily salt", zap.String("day", day))
	return s.refresh(ctx)
}

// refresh rereads the topic: the first live record of each day wins.
func (s *SaltStore) refresh(ctx context.Context) error {
	found, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for day, old := range s.salts {
		if _, kept := found[day]; !kept {
			clear(old.salt) // the last copy in this process
		}
	}
	s.salts = found
	return nil
}

// read returns the winning record of each live day: the first in the log.
func (s *SaltStore) read(ctx context.Context) (map[string]saltRecord, error) {
	now := s.now()
	found := map[string]saltRecord{}
	err := kafkastate.ReadPartition(ctx, s.conn, s.topic, 0, func(r *kgo.Record) {
		key := string(r.Key)
		day, _, ok := strings.Cut(key, "/")
		if !ok || !s.live(day, now) {
			return
		}
		if r.Value == nil { // tombstone: that record is withdrawn
			if cur, ok := found[day]; ok && cur.key == key {
				delete(found, day)
			}
			return
		}
		if _, ok := found[day]; !ok {
			found[day] = saltRecord{key: key, salt: append([]byte(nil), r.Value...), offset: r.Offset}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading salts: %w", err)
	}
	return found, nil
}

// Rotate makes sure today's and tomorrow's salts exist and destroys the
// salts of days that are over: it tombstones their records and, so that
// nothing is left to read even where the broker does not compact, it
// writes the live salts again and deletes every record before those
// copies.
func (s *SaltStore) Rotate(ctx context.Context) error {
	now := s.now()
	for _, at := range []time.Time{now, now.Add(24 * time.Hour)} {
		if err := s.ensure(ctx, dayOf(at)); err != nil {
			return err
		}
	}
	var dead []string
	err := kafkastate.ReadPartition(ctx, s.conn, s.topic, 0, func(r *kgo.Record) {
		day, _, _ := strings.Cut(string(r.Key), "/")
		if r.Value != nil && !s.live(day, now) {
			dead = append(dead, string(r.Key))
		}
	})
	if err != nil {
		return fmt.Errorf("reading salts: %w", err)
	}
	if len(dead) == 0 {
		return nil
	}
	// Another instance may create a day's salt meanwhile; deleting below
	// the copies would destroy it. So the copies are checked against the
	// topic before the deletion, and written again when a day is missing.
	for range 3 {
		first, err := s.rewrite(ctx, dead)
		if err != nil {
			return err
		}
		found, err := s.read(ctx)
		if err != nil {
			return err
		}
		if s.copied(found, first) {
			if err := kafkastate.DeleteBefore(ctx, s.cl, s.topic, 0, first); err != nil {
				return err
			}
			s.log.Info("destroyed old daily salts", zap.Int("records", len(dead)))
			return s.refresh(ctx)
		}
		if err := s.refresh(ctx); err != nil {
			return err
		}
	}
	return errors.New("salts kept changing while old ones were destroyed; trying again at the next rotation")
}

// rewrite writes the live winners again, ahead of tombstones for the dead
// records, and returns the offset of the first copy: the day's first record
// stays its winner once everything below it is deleted.
func (s *SaltStore) rewrite(ctx context.Context, dead []string) (int64, error) {
	s.mu.RLock()
	days := make([]string, 0, len(s.salts))
	for day := range s.salts {
		days = append(days, day)
	}
	sort.Strings(days)
	recs := make([]*kgo.Record, 0, len(dead)+len(days))
	for _, day := range days {
		rec := s.salts[day]
		recs = append(recs, &kgo.Record{Key: []byte(rec.key), Value: append([]byte(nil), rec.salt...)})
	}
	s.mu.RUnlock()
	for _, key := range dead {
		recs = append(recs, &kgo.Record{Key: []byte(key)}) // tombstone
	}
	results, err := s.cl.ProduceSync(ctx, recs...).First()
	if err != nil {
		return 0, fmt.Errorf("writing salt tombstones: %w", err)
	}
	return results.Offset, nil
}

// copied reports whether every live day's winner in found is either at or
// above first or one of this instance's winners (copied above first).
func (s *SaltStore) copied(found map[string]saltRecord, first int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for day, rec := range found {
		if rec.offset >= first {
			continue
		}
		if mine, ok := s.salts[day]; !ok || mine.key != rec.key {
			return false
		}
	}
	return true
}

// Run rotates every interval until ctx ends.
func (s *SaltStore) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, func() {
		if err := s.Rotate(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("rotating daily salts failed; retrying at the next tick", zap.Error(err))
		}
	})
}

// Close forgets the salts and disconnects.
func (s *SaltStore) Close() {
	s.mu.Lock()
	for _, rec := range s.salts {
		clear(rec.salt)
	}
	s.salts = nil
	s.mu.Unlock()
	s.cl.Close()
}
