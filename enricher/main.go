// Command enricher turns raw hits into enriched events: it reads the raw
// topic, learns browser, OS, device, bot status, referrer, campaign, geo,
// visitor and session, drops the IP address and writes the enriched topic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	"github.com/aluminiapp/pipeline/enricher/internal/geo"
	"github.com/aluminiapp/pipeline/enricher/internal/pipeline"
	"github.com/aluminiapp/pipeline/enricher/internal/referrer"
	"github.com/aluminiapp/pipeline/enricher/internal/session"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/outage"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/lib/testclock"
)

type config struct {
	service.Options
	Kafka   kafkaconf.Config
	GroupID string
	// KafkaSessionTimeout bounds how long a crashed enricher's partitions wait.
	KafkaSessionTimeout time.Duration
	Member              kafkaconf.GroupMember
	Clients             registry.FileConfig
	VisitorSecret       string
	MaxBatch            int
	MaxWait             time.Duration
	Workers             int
	FetchMaxBytes       int

	GeoDB       string
	UACacheSize int

	SaltTopic    string
	SaltGrace    time.Duration
	SaltInterval time.Duration

	SessionTopic       string
	SessionTimeout     time.Duration
	SessionMaxVisitors int
	SessionTTL         time.Duration
}

func (c *config) Common() *service.Options { return &c.Options }

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9101")
	c.Kafka.RegisterFlags(fs)
	fs.StringVar(&c.GroupID, "group-id", "alumini-enricher", "Kafka consumer group shared by all enricher instances")
	c.Member.RegisterFlags(fs)
	fs.DurationVar(&c.KafkaSessionTimeout, "kafka-session-timeout", 10*time.Second, "how long the consumer group waits for a silent enricher before moving its partitions to the others (the broker's group.min/max.session.timeout.ms bound it; see docs/faults.md)")
	c.Clients.RegisterFlags(fs)
	fs.StringVar(&c.VisitorSecret, "visitor-secret", "", "secret key of the visitor-id hash, at least 32 characters (required; set it through the environment, not the command line)")
	fs.IntVar(&c.MaxBatch, "batch-max-records", 1000, "most raw hits enriched and written as one batch")
	fs.DurationVar(&c.MaxWait, "batch-max-wait", 50*time.Millisecond, "longest a partial batch waits for more hits")
	fs.IntVar(&c.Workers, "workers", 0, "goroutines that enrich, each for its share of the raw topic's partitions, each with a batch being written behind the one it fills (0: one per CPU, GOMAXPROCS)")
	fs.IntVar(&c.FetchMaxBytes, "fetch-max-bytes", 1<<20, "most record bytes one fetch of one raw partition returns")
	fs.StringVar(&c.GeoDB, "geo-db", "", "path of a MaxMind GeoIP2/GeoLite2 City or DB-IP City .mmdb file; empty: no geo")
	fs.IntVar(&c.UACacheSize, "ua-cache-size", 50000, "user agents whose parse is cached (about 200 bytes each)")
	fs.StringVar(&c.SaltTopic, "salt-topic", "alumini.salts", "compacted Kafka topic of the daily random salts of cookieless visitor ids")
	fs.DurationVar(&c.SaltGrace, "salt-grace", time.Hour, "how long after its UTC day a salt is kept for hits delayed in Kafka, then destroyed")
	fs.DurationVar(&c.SaltInterval, "salt-rotate-interval", time.Minute, "how often salts are checked, made and destroyed")
	fs.StringVar(&c.SessionTopic, "session-topic", "alumini.sessions", "compacted Kafka topic of per-visitor session state, one partition per raw-topic partition")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", 30*time.Minute, "inactivity after which a visitor's next event starts a new session")
	fs.IntVar(&c.SessionMaxVisitors, "session-max-visitors", 1_000_000, "visitors whose session state is held in memory (about 150 bytes each); the least recently seen are forgotten first")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 30*24*time.Hour, "how long a visitor's state is kept after their last event (new-versus-returning looks this far back)")
}

func (c *config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.GroupID == "" {
		return errors.New("group-id is required")
	}
	if err := c.Clients.Validate(); err != nil {
		return err
	}
	if len(c.VisitorSecret) < 32 {
		return errors.New("visitor-secret must be at least 32 characters (for example: head -c 32 /dev/urandom | base64)")
	}
	if err := c.Member.Validate(); err != nil {
		return err
	}
	if c.KafkaSessionTimeout < 100*time.Millisecond || c.KafkaSessionTimeout > 30*time.Minute {
		return fmt.Errorf("kafka-session-timeout %v: want 100ms to 30m", c.KafkaSessionTimeout)
	}
	if c.MaxBatch < 1 || c.MaxWait <= 0 {
		return errors.New("batch-max-records, batch-max-wait must be positive")
	}
	if c.FetchMaxBytes < 1<<10 || c.FetchMaxBytes > 64<<20 {
		return fmt.Errorf("fetch-max-bytes %d: want 1 KiB to 64 MiB", c.FetchMaxBytes)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return fmt.Errorf("workers %d: want 0 (one per CPU) to 1024", c.Workers)
	}
	if c.UACacheSize < 1 || c.SessionMaxVisitors < 1 {
		return errors.New("ua-cache-size, session-max-visitors must be positive")
	}
	if c.SaltTopic == "" || c.SessionTopic == "" {
		return errors.New("salt-topic, session-topic are required")
	}
	if c.SaltGrace < 0 || c.SaltGrace > 24*time.Hour {
		return errors.New("salt-grace must be between 0 and 24h: longer would keep a salt for a second day")
	}
	if c.SaltInterval <= 0 || c.SessionTimeout <= 0 || c.SessionTTL < c.SessionTimeout {
		return errors.New("salt-rotate-interval, session-timeout must be positive and session-ttl at least session-timeout")
	}
	return nil
}

func main() {
	var cfg config
	os.Exit(service.Main("enricher", &cfg, os.Args[1:], func(ctx context.Context, rt *service.Runtime) error {
		return run(ctx, &cfg, rt)
	}))
}

// run starts the parts in order and stops them in reverse: the pipeline
// finishes its batch first, then the salt rotation stops, then the Kafka
// clients of the state stores close.
func run(ctx context.Context, cfg *config, rt *service.Runtime) (err error) {
	clients, err := cfg.Clients.Open(ctx, rt.Log)
	if err != nil {
		return err
	}
	// Kafka may not be up yet (services start in any order) or may be
	// moving: every step that needs it is retried, with /readyz saying
	// why, until it answers. Only configuration errors stop the enricher.
	rt.Health.AddCheck("kafka", cfg.Kafka.Ping)
	kafkaDep := rt.Dependency("kafka")
	retry := func(what string, op func(ctx context.Context) error) error {
		return kafkaDep.Retry(ctx, what, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, startupTryTimeout)
			defer cancel()
			return op(ctx)
		})
	}
	if err := retry("creating topics", func(ctx context.Context) error {
		return cfg.Kafka.EnsureTopics(ctx, cfg.Kafka.RawTopic, cfg.Kafka.EnrichedTopic, cfg.Kafka.DeadLetterTopic)
	}); err != nil {
		return stoppedOr(ctx, err)
	}
	var partitions int32
	if err := retry("describing the raw topic", func(ctx context.Context) (err error) {
		partitions, err = rawPartitions(ctx, cfg)
		return err
	}); err != nil {
		return stoppedOr(ctx, err)
	}

	var geoDB *geo.DB
	if cfg.GeoDB != "" {
		if geoDB, err = geo.Open(cfg.GeoDB); err != nil {
			return err
		}
		defer func() {
			if cerr := geoDB.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
	}
	uas, err := useragent.New(cfg.UACacheSize)
	if err != nil {
		return err
	}
	refs, err := referrer.New()
	if err != nil {
		return err
	}

	// The wall clock, unless an end-to-end test sets it (lib/testclock).
	now := testclock.FromEnv()
	var salts *visitor.SaltStore
	if err := retry("loading salts", func(ctx context.Context) (err error) {
		salts, err = visitor.OpenSaltStore(ctx, visitor.SaltConfig{
			Kafka: cfg.Kafka.FranzOpts(), Topic: cfg.SaltTopic, Grace: cfg.SaltGrace,
			Replication: int16(cfg.Kafka.ReplicationFactor), Now: now,
		}, rt.Log)
		return err
	}); err != nil {
		return stoppedOr(ctx, err)
	}
	defer salts.Close()
	if err := retry("rotating salts", salts.Rotate); err != nil {
		return stoppedOr(ctx, err)
	}
	rotateCtx, stopRotate := context.WithCancel(context.Background())
	rotated := make(chan struct{})
	go func() { defer close(rotated); salts.Run(rotateCtx, cfg.SaltInterval) }()
	defer func() { stopRotate(); <-rotated }()

	var sessions *session.Tracker
	if err := retry("opening session state", func(ctx context.Context) (err error) {
		sessions, err = session.Open(ctx, session.Config{
			Kafka: cfg.Kafka.FranzOpts(), Topic: cfg.SessionTopic, Timeout: cfg.SessionTimeout,
			MaxVisitors: cfg.SessionMaxVisitors, TTL: cfg.SessionTTL,
		}, partitions, int16(cfg.Kafka.ReplicationFactor), rt.Log)
		if errors.Is(err, session.ErrTooFewPartitions) {
			return outage.Permanent(err)
		}
		return err
	}); err != nil {
		return stoppedOr(ctx, err)
	}
	defer sessions.Close()

	// A crashed predecessor's member would hold the partitions until its
	// session timed out; best effort, the session timeout still applies.
	clientID := cfg.Member.ClientID("enricher")
	evictCtx, cancelEvict := context.WithTimeout(ctx, 10*time.Second)
	if n, err := cfg.Kafka.EvictPredecessors(evictCtx, cfg.GroupID, clientID); err != nil {
		rt.Log.Warn("could not remove the group members of an earlier run", zap.Error(err))
	} else if n > 0 {
		rt.Log.Info("removed the group members an earlier run left", zap.Int("members", n))
	}
	cancelEvict()
	dialer := cfg.Kafka.Dialer(10 * time.Second)
	dialer.ClientID = clientID
	// kafka-go's Transport caches the topic's metadata and refreshes it
	// only every random 0-MetadataTTL: after a leader move, writes to the
	// former leader fail until that refresh. One small metadata request a
	// second bounds the wait to about a second (docs/faults.md, leader
	// moves, has the waits with kafka-go's default and with this).
	transport := cfg.Kafka.Transport()
	transport.MetadataTTL = time.Second
	e := enrich.New(enrich.Config{
		Clients: clients, Visitors: visitor.New([]byte(cfg.VisitorSecret), salts),
		UserAgents: uas, Referrers: refs, Geo: geoDB, Now: now,
	})
	p, err := pipeline.New(pipeline.Config{
		Brokers:         cfg.Kafka.BrokerList(),
		Transport:       transport,
		Dialer:          dialer,
		GroupID:         cfg.GroupID,
		RawTopic:        cfg.Kafka.RawTopic,
		EnrichedTopic:   cfg.Kafka.EnrichedTopic,
		DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		MaxBatch:        cfg.MaxBatch,
		MaxWait:         cfg.MaxWait,
		Workers:         cfg.Workers,
		FetchMaxBytes:   cfg.FetchMaxBytes,
		Kafka:           kafkaDep,
		SessionTimeout:  cfg.KafkaSessionTimeout,
	}, e, sessions, rt.Log, rt.Metrics)
	if err != nil {
		return err
	}
	defer func() {
		// After Run returned: the batch in hand is written and committed.
		if cerr := p.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing kafka clients: %w", cerr))
		}
	}()
	rt.Health.AddCheck("kafka_pipeline", kafkaDep.Check)
	rt.Health.Started()
	return p.Run(ctx)
}

// startupTryTimeout bounds one try of a startup step, so a broker that
// accepts connections but does not answer turns into a retry.
const startupTryTimeout = 30 * time.Second

// stoppedOr is nil when ctx ended (a stop while waiting for Kafka is a
// clean stop), and err otherwise.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// rawPartitions is the raw topic's partition count, which the session
// state topic must match.
func rawPartitions(ctx context.Context, cfg *config) (int32, error) {
	// FranzOpts: the brokers' TLS and SASL too, or a secured cluster
	// refuses the enricher at start (TestPipelineOnSASLKafka).
	cl, err := kgo.NewClient(cfg.Kafka.FranzOpts()...)
	if err != nil {
		return 0, fmt.Errorf("connecting to kafka: %w", err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, cfg.Kafka.RawTopic)
	if err != nil {
		return 0, fmt.Errorf("describing %s: %w", cfg.Kafka.RawTopic, err)
	}
	t, ok := topics[cfg.Kafka.RawTopic]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("describing %s: topic missing (%v)", cfg.Kafka.RawTopic, t.Err)
	}
	return int32(len(t.Partitions)), nil
}
