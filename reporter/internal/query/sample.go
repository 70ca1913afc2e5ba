package query

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/maypok86/otter/v2"
)

// volumeKey is a client's range whose events Sample counted.
type volumeKey struct {
	client   string
	from, to int64
}

const volumeTTL = 5 * time.Minute

// DefaultSampleAbove is the reporter's -sample-above-events: sized for a
// 2-core server running ClickHouse 18.16 (docs/reporter.md); larger
// servers can count a few million events exactly within the same time.
const DefaultSampleAbove = 200_000

// SampleAbove makes reports over more than rows events (of the client, in
// the range) read a sample of the visitors, see Sample; 0 (the zero Store)
// always reads every event. Call it before the store serves reports.
func (s *Store) SampleAbove(rows uint64) {
	s.sampleAbove = rows
	s.volumes = otter.Must(&otter.Options[volumeKey, uint64]{
		MaximumSize: 10_000, ExpiryCalculator: otter.ExpiryWriting[volumeKey, uint64](volumeTTL),
	})
}

// DefaultSampleRolledAbove is the reporter's
// -sample-rolled-above-events: the size up to which a report read from
// rolled-up sessions stays within the reporter's p95 target on the
// 2-core reference server (measured in docs/reporter.md).
const DefaultSampleRolledAbove = 5_000_000

// SampleRolledAbove makes reports the store answers from rolled-up
// sessions (Exact) read a sample only over more than rows events; 0 never
// samples them. Call it before the store serves reports.
func (s *Store) SampleRolledAbove(rows uint64) { s.sampleRolledAbove = rows }

// sampleSteps are the sample sizes Sample picks from: one in 2, 5, 10, ...
// visitors, so that a sample rate reads as a round number.
var sampleSteps = []uint64{2, 5, 10, 20, 50, 100, 200, 500, 1000}

// Sample returns the one-in-k sample of visitors report r over p should
// read: 1 (every event) when the client has at most SampleAbove events in
// p's range, or at most SampleRolledAbove when the store answers r
// exactly from rolled-up sessions (Exact); else the smallest step that
// brings the events read under SampleAbove. ClickHouse then reads k times
// fewer rows, and the counts, scaled by k, carry a sampling error of
// about 1/sqrt(visitors in the sample) (docs/reporter.md). Counting the
// range first costs one scan of the timestamp column over the client's
// range, the primary key's (docs/bench/reporter.md has its cost); the
// count is kept for a few minutes per client and range.
func (s *Store) Sample(ctx context.Context, sc Scope, p Params, r Report) (uint64, error) {
	above := s.sampleAbove
	if s.Exact(p, r) {
		// The days not rolled up yet are counted from events: many of
		// them (a first roll still under way) cost what events cost.
		tail, err := s.tailVolume(ctx, sc, p.Range)
		if err != nil {
			return 0, err
		}
		if tail <= s.sampleAbove {
			above = s.sampleRolledAbove
		}
	}
	if s.sampleAbove == 0 || above == 0 {
		return 1, nil
	}
	// The dashboard's reports of one range arrive together: one of them
	// counts, the others wait for its count.
	key := volumeKey{sc.clientID, p.Range.From.Unix(), p.Range.To.Unix()}
	n, err := s.volumes.Get(ctx, key, otter.LoaderFunc[volumeKey, uint64](func(ctx context.Context, _ volumeKey) (uint64, error) {
		q, err := sc.Volume(p.Range)
		if err != nil {
			return 0, err
		}
		var n uint64
		err = s.rows(ctx, "volume", q, func(r driver.Rows) error { return r.Scan(&n) })
		return n, err
	}))
	if err != nil {
		return 0, err
	}
	if n <= above {
		return 1, nil
	}
	for _, k := range sampleSteps {
		if n/k <= s.sampleAbove {
			return k, nil
		}
	}
	return sampleSteps[len(sampleSteps)-1], nil
}

// scaled is n counted in a one-in-k sample, scaled to the whole.
func scaled(n, k uint64) uint64 {
	if k > 1 {
		return n * k
	}
	return n
}
