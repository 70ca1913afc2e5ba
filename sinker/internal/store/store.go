// Package store is the sinker's ClickHouse side: it creates the database,
// opens the native-protocol connection and inserts batches of events.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Store inserts events into one database's events table.
type Store struct {
	conn   driver.Conn
	blocks *sync.Pool // of *chschema.Block, reused across inserts
	// shards: events is a Distributed table (cluster mode), see OnCluster.
	shards bool
}

func newBlockPool() *sync.Pool {
	return &sync.Pool{New: func() any { return new(chschema.Block) }}
}

// Open creates the database when it is missing and returns a Store whose
// connection uses it as its default database, which is what the
// migrations and InsertSQL expect; with cfg.Cluster set, inserts wait for
// the shards (see OnCluster).
func Open(ctx context.Context, cfg chconf.Config) (*Store, error) {
	if err := cfg.CreateDatabase(ctx); err != nil {
		return nil, err
	}
	conn, err := cfg.Open()
	if err != nil {
		return nil, err
	}
	return &Store{conn: conn, blocks: newBlockPool(), shards: cfg.Cluster != ""}, nil
}

// New wraps an open connection whose default database holds the events table.
func New(conn driver.Conn) *Store { return &Store{conn: conn, blocks: newBlockPool()} }

// OnCluster tells the store that events is a Distributed table. Its
// inserts then return only once every shard has stored its rows
// (chschema.AwaitShards): otherwise the sinker would commit Kafka offsets
// for rows no shard holds yet, which a lost node would lose.
func (s *Store) OnCluster() { s.shards = true }

// Conn is the underlying connection, for migrations.
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping is a readiness check that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// ErrRejected marks an insert that ClickHouse refused because of the data
// itself: retrying the same rows fails again, so the caller splits the
// batch to find the bad rows instead.
var ErrRejected = errors.New("clickhouse rejected the rows")

// Insert writes events as one native-protocol block. ClickHouse either
// takes the whole block or none of it, so a failed Insert can be retried
// with the same events. Errors caused by the data wrap ErrRejected.
func (s *Store) Insert(ctx context.Context, events []*aluminiv1.Event) error {
	return s.insert(ctx, chschema.InsertSQL, events)
}

// sendBlockRows is how many rows go to ClickHouse in one native block.
const sendBlockRows = 8192

func (s *Store) insert(ctx context.Context, insertSQL string, events []*aluminiv1.Event) error {
	b := s.blocks.Get().(*chschema.Block)
	defer func() {
		b.Reset()
		s.blocks.Put(b)
	}()
	b.Grow(len(events))
	for _, ev := range events {
		b.Add(ev)
	}
	// PrepareBatch, not Exec with bound VALUES: ClickHouse 18.16 waits for a
	// data block after an INSERT sent as a query.
	if s.shards {
		ctx = chschema.AwaitShards(ctx)
	}
	batch, err := s.conn.PrepareBatch(ctx, insertSQL)
	if err != nil {
		return fmt.Errorf("preparing insert: %w", classify(err))
	}
	// Whole columns at once: several times faster than a row Append,
	// which converts every value through reflection. Sent in blocks of
	// sendBlockRows: the driver's column buffers start empty for every
	// insert and grow by copying, which for one block of the whole batch
	// cost more CPU than encoding it; flushed blocks reuse the buffers.
	// The server squashes the blocks of one INSERT back into parts of
	// min_insert_block_size_rows, so this does not make more parts.
	for from := 0; from < b.Len(); from += sendBlockRows {
		to := min(from+sendBlockRows, b.Len())
		if err := b.AppendRange(batch, from, to); err != nil {
			// The driver checks values while appending (a DateTime outside
			// 1970..2106, say): that is the data's fault too.
			return errors.Join(fmt.Errorf("appending %d events: %w: %w", len(events), ErrRejected, err), batch.Abort())
		}
		if to == b.Len() {
			break
		}
		if err := batch.Flush(); err != nil {
			return errors.Join(fmt.Errorf("sending %d events: %w", len(events), classify(err)), batch.Abort())
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("sending %d events: %w", len(events), classify(err))
	}
	return nil
}

// dataErrorCodes are ClickHouse error codes that blame the inserted values
// (parsing, types, ranges, constraints, throwIf in a MATERIALIZED column or
// view), not the server's state.
var dataErrorCodes = map[int32]bool{
	6: true, 26: true, 27: true, 32: true, 33: true, 38: true, 41: true, 43: true, 53: true,
	69: true, 70: true, 72: true, 117: true, 128: true, 131: true, 190: true, 321: true,
	395: true, 469: true,
}

// codeTooManyParts is TOO_MANY_PARTS, which ClickHouse also raises for one
// block spanning too many partitions (months) — only that case is the
// data's fault, and a smaller block fixes it.
const codeTooManyParts = 252

func classify(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if dataErrorCodes[ex.Code] || (ex.Code == codeTooManyParts && strings.Contains(ex.Message, "for single INSERT block")) {
			return fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	return err
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }
