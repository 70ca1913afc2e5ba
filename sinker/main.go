// Command sinker stores Alumini's enriched events: it consumes the enriched
// Kafka topic in a consumer group and inserts batches into ClickHouse,
// committing offsets only after ClickHouse accepted them.
//
// `sinker migrate [flags]` applies the schema migrations and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/envflag"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/sinker/internal/copies"
	"github.com/aluminiapp/pipeline/sinker/internal/erased"
	"github.com/aluminiapp/pipeline/sinker/internal/retention"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

type config struct {
	service.Options
	kafkaconf.Config
	ClickHouse    chconf.Config
	GroupID       string
	BatchMaxRows  int
	BatchMaxBytes int
	BatchMaxWait  time.Duration
	// FetchMaxBytes bounds one fetch of one partition.
	FetchMaxBytes int
	// FetchMinBytes is what a fetch waits for (up to 250ms).
	FetchMinBytes int
	// SessionTimeout bounds how long a crashed sinker's partitions wait.
	SessionTimeout time.Duration
	Member         kafkaconf.GroupMember
	// Clients is the registry whose retention_days the cleanup enforces.
	Clients           registry.FileConfig
	RetentionInterval time.Duration
	// ErasedRefresh is how often the erased visitors are reloaded.
	ErasedRefresh time.Duration
	// CopyWindow is how many of a partition's latest records are checked
	// for an earlier copy of each event.
	CopyWindow int
}

func (c *config) Common() *service.Options { return &c.Options }

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9102")
	c.Config.RegisterFlags(fs)
	c.ClickHouse.RegisterFlags(fs)
	fs.StringVar(&c.GroupID, "group-id", "alumini-sinker", "Kafka consumer group the sinkers share the enriched topic's partitions in")
	fs.IntVar(&c.BatchMaxRows, "batch-max-rows", 50000, "records per ClickHouse insert at most")
	fs.IntVar(&c.BatchMaxBytes, "batch-max-bytes", 64<<20, "record bytes per ClickHouse insert at most; with batch-max-rows it bounds memory")
	fs.DurationVar(&c.BatchMaxWait, "batch-max-wait", time.Second, "how long a batch may wait for more records after its first; the latency until events are queryable")
	fs.IntVar(&c.FetchMaxBytes, "fetch-max-bytes", 1<<20, "most record bytes one fetch of one enriched partition returns; each partition holds one fetch and 16 more may wait")
	fs.IntVar(&c.FetchMinBytes, "fetch-min-bytes", 64<<10, "record bytes the broker gathers (for at most 250ms) before it answers a fetch of one enriched partition: fewer, larger fetches cost less CPU per row; 1 answers at once")
	c.Member.RegisterFlags(fs)
	fs.DurationVar(&c.SessionTimeout, "kafka-session-timeout", 10*time.Second, "how long the consumer group waits for a silent sinker before moving its partitions to the others (the broker's group.min/max.session.timeout.ms bound it; see docs/faults.md)")
	c.Clients.RegisterFlags(fs)
	fs.DurationVar(&c.RetentionInterval, "retention-interval", time.Hour, "how often events older than their client's retention_days are deleted (needs -clients-file; 0 disables)")
	fs.IntVar(&c.CopyWindow, "copy-window", 500000, "records of each enriched partition, the latest, searched for an earlier copy of an event (same client and event id); only the first copy is stored. About 30 bytes per record in memory; read back from Kafka when the sinker takes a partition over")
	fs.DurationVar(&c.ErasedRefresh, "erased-refresh-interval", 30*time.Second, "how often the visitors erased through the reporter (table erased_visitors) are reloaded; their events replayed from Kafka are dropped, and those arriving within this long of an erasure are stored and only hidden by the reporter")
}

func (c *config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	if c.GroupID == "" {
		return errors.New("group-id is required")
	}
	// ClickHouse prefers few large inserts; a million rows or 1 GiB is
	// already more than one sinker should hold in memory.
	if c.BatchMaxRows < 1 || c.BatchMaxRows > 1_000_000 {
		return fmt.Errorf("batch-max-rows %d: want 1 to 1000000", c.BatchMaxRows)
	}
	if c.BatchMaxBytes < 1<<10 || c.BatchMaxBytes > 1<<30 {
		return fmt.Errorf("batch-max-bytes %d: want 1 KiB to 1 GiB", c.BatchMaxBytes)
	}
	if c.BatchMaxWait < time.Millisecond || c.BatchMaxWait > time.Minute {
		return fmt.Errorf("batch-max-wait %v: want 1ms to 1m", c.BatchMaxWait)
	}
	if c.FetchMaxBytes < 1<<10 || c.FetchMaxBytes > 64<<20 {
		return fmt.Errorf("fetch-max-bytes %d: want 1 KiB to 64 MiB", c.FetchMaxBytes)
	}
	if c.FetchMinBytes < 1 || c.FetchMinBytes > c.FetchMaxBytes {
		return fmt.Errorf("fetch-min-bytes %d: want 1 to fetch-max-bytes (%d)", c.FetchMinBytes, c.FetchMaxBytes)
	}
	if c.Clients.Path != "" {
		if err := c.Clients.Validate(); err != nil {
			return err
		}
	}
	if c.RetentionInterval < 0 {
		return fmt.Errorf("retention-interval %v: want 0 (off) or more", c.RetentionInterval)
	}
	if c.ErasedRefresh < time.Second || c.ErasedRefresh > time.Hour {
		return fmt.Errorf("erased-refresh-interval %v: want 1s to 1h", c.ErasedRefresh)
	}
	if c.CopyWindow < 1 || c.CopyWindow > 100_000_000 {
		return fmt.Errorf("copy-window %d: want 1 to 100000000", c.CopyWindow)
	}
	if err := c.Member.Validate(); err != nil {
		return err
	}
	if c.SessionTimeout < 100*time.Millisecond || c.SessionTimeout > 30*time.Minute {
		return fmt.Errorf("kafka-session-timeout %v: want 100ms to 30m", c.SessionTimeout)
	}
	return nil
}

func main() {
	var cfg config
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		os.Exit(migrateMain(&cfg, os.Args[2:]))
	}
	os.Exit(service.Main("sinker", &cfg, os.Args[1:], cfg.run))
}

// run starts the sinker and, once ctx is cancelled, stops it in this order:
// fetching stops, the batch in hand is inserted and committed (Sink.Run),
// then the dead-letter writer and the Kafka reader (leaving the group, so
// the partitions move at once) are closed, the erased-visitor refresh stops,
// and ClickHouse, which it reads, is closed last (the defers below).
func (c *config) run(ctx context.Context, rt *service.Runtime) (err error) {
	// Kafka and ClickHouse may not be up yet (services start in any
	// order): each start step is retried, with /readyz saying why, until
	// they answer.
	rt.Health.AddCheck("kafka", c.Ping)
	kafkaDep, chDep := rt.Dependency("kafka"), rt.Dependency("clickhouse")
	rt.Health.AddCheck("clickhouse_calls", chDep.Check)
	if err := kafkaDep.Retry(ctx, "creating topics", func(ctx context.Context) error {
		return c.EnsureTopics(ctx, c.EnrichedTopic, c.DeadLetterTopic)
	}); err != nil {
		return stoppedOr(ctx, err)
	}
	var st *store.Store
	var target chschema.Target
	if err := chDep.Retry(ctx, "opening and migrating the database", func(ctx context.Context) (err error) {
		if st == nil {
			if st, err = store.Open(ctx, c.ClickHouse); err != nil {
				return err
			}
		}
		if err := chschema.Apply(ctx, st.Conn(), rt.Log, c.schemaOptions()...); err != nil {
			return fmt.Errorf("migrating database %s: %w", c.ClickHouse.Database, err)
		}
		target, err = chschema.Detect(ctx, st.Conn(), c.ClickHouse.Database, c.ClickHouse.Cluster)
		return err
	}); err != nil {
		if st != nil {
			err = errors.Join(err, st.Close())
		}
		return stoppedOr(ctx, err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing clickhouse: %w", cerr))
		}
	}()

	// The erased visitors are loaded before the first fetch, so a replay
	// at start cannot store them. A missing table or a failed load does
	// not stop the sinker: the set refreshes in the background.
	erasedSet := erased.New(st.Conn(), rt.Log, rt.Metrics)
	erasedSet.Refresh(ctx)
	erasedCtx, stopErased := context.WithCancel(ctx)
	erasedDone := make(chan struct{})
	go func() {
		defer close(erasedDone)
		erasedSet.Run(erasedCtx, c.ErasedRefresh)
	}()
	// Before ClickHouse is closed (defers run last first).
	defer func() {
		stopErased()
		<-erasedDone
	}()

	// A crashed predecessor's member would hold the partitions until its
	// session timed out; best effort, the session timeout still applies.
	clientID := c.Member.ClientID("sinker")
	evictCtx, cancelEvict := context.WithTimeout(ctx, 10*time.Second)
	if n, err := c.EvictPredecessors(evictCtx, c.GroupID, clientID); err != nil {
		rt.Log.Warn("could not remove the group members of an earlier run", zap.Error(err))
	} else if n > 0 {
		rt.Log.Info("removed the group members an earlier run left", zap.Int("members", n))
	}
	cancelEvict()
	dialer := c.Dialer(10 * time.Second)
	dialer.ClientID = clientID
	reader, err := sink.NewReader(sink.ReaderConfig{
		Brokers: c.BrokerList(), Topic: c.EnrichedTopic, GroupID: c.GroupID, SessionTimeout: c.SessionTimeout,
		Dialer: dialer, Kafka: kafkaDep, FetchMaxBytes: c.FetchMaxBytes,
		FetchMinBytes: c.FetchMinBytes, FetchMaxWait: 250 * time.Millisecond,
	}, rt.Log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := reader.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing kafka reader: %w", cerr))
		}
	}()
	dlq := sink.NewDeadLetterWriter(c.Addr(), c.Transport(), c.DeadLetterTopic, rt.Log)
	defer func() {
		if cerr := dlq.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing dead-letter writer: %w", cerr))
		}
	}()

	s := sink.New(sink.Config{
		MaxRows:  c.BatchMaxRows,
		MaxBytes: c.BatchMaxBytes,
		MaxWait:  c.BatchMaxWait,
		// Most of the shutdown timeout goes to the last flush; the rest is
		// left for closing the clients.
		FlushTimeout: c.ShutdownTimeout * 4 / 5,
		Erased:       erasedSet,
		Copies:       copies.New(c.CopyWindow, copies.KafkaLoader(c.Dialer(10*time.Second), c.BrokerList(), c.EnrichedTopic)),
		ClickHouse:   chDep,
		Kafka:        kafkaDep,
	}, reader, dlq, st, rt.Log, rt.Metrics)

	if c.Clients.Path != "" && c.RetentionInterval > 0 {
		clients, err := c.Clients.Open(ctx, rt.Log)
		if err != nil {
			return err
		}
		cleaner := retention.New(st.Conn(), target, func(id string) (int, error) {
			cl, err := clients.ByID(id)
			if err != nil {
				return 0, err
			}
			return cl.RetentionDays, nil
		}, rt.Log)
		// It stops with ctx; ClickHouse is closed after Run returns, and a
		// cleanup cut short by that is retried at the next start.
		go cleaner.Run(ctx, c.RetentionInterval)
	} else {
		rt.Log.Info("retention cleanup off: no -clients-file or -retention-interval 0")
	}

	rt.Health.AddCheck("clickhouse", st.Ping)
	rt.Health.AddCheck("clickhouse_insert", s.Ready)
	rt.Health.Started()
	rt.Log.Info("sinker consuming", zap.String("topic", c.EnrichedTopic), zap.String("group_id", c.GroupID),
		zap.String("clickhouse_addr", c.ClickHouse.Addr), zap.String("database", c.ClickHouse.Database))
	return s.Run(ctx)
}

// migrateMain parses the same flags and environment as the service, applies
// the migrations and returns the exit code. It serves no admin endpoint, so
// it can run beside a sinker on the same host.
func migrateMain(cfg *config, args []string) int {
	fs := flag.NewFlagSet("sinker migrate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.Usage = envflag.Usage(fs)
	if err := envflag.Parse(fs, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "sinker migrate: %v\n", err)
		return 2
	}
	for _, validate := range []func() error{cfg.Options.Validate, cfg.Validate} {
		if err := validate(); err != nil {
			fmt.Fprintf(os.Stderr, "sinker migrate: invalid configuration: %v\n", err)
			return 2
		}
	}
	log, err := service.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sinker migrate: %v\n", err)
		return 2
	}
	log = log.With(zap.String("service", "sinker"), zap.String("command", "migrate"))
	defer func() { _ = log.Sync() }() // Sync fails on terminals (ENOTTY/EINVAL); nothing to do about it at exit.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := migrate(ctx, cfg.ClickHouse, log, cfg.schemaOptions()...); err != nil {
		log.Error("migration failed", zap.Error(err))
		return 1
	}
	return 0
}

// migrate creates the database when missing and applies the migrations.
func migrate(ctx context.Context, o chconf.Config, log *zap.Logger, opts ...chschema.Option) (err error) {
	st, err := store.Open(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing clickhouse: %w", cerr))
		}
	}()
	if err := chschema.Apply(ctx, st.Conn(), log, opts...); err != nil {
		return fmt.Errorf("migrating database %s: %w", o.Database, err)
	}
	v, err := chschema.Applied(ctx, st.Conn())
	if err != nil {
		return err
	}
	log.Info("schema up to date", zap.String("database", o.Database), zap.Uint32("version", v))
	return nil
}

func (c *config) schemaOptions() []chschema.Option {
	if c.ClickHouse.Cluster == "" {
		return nil
	}
	return []chschema.Option{chschema.OnCluster(c.ClickHouse.Cluster)}
}

// stoppedOr is nil when ctx ended (a stop while waiting for a dependency is
// a clean stop), and err otherwise.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
