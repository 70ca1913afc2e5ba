// Command enricher turns raw hits into enriched events: it reads the raw
// topic, adds what can be learnt about each hit, drops the IP address and
// writes the enriched topic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	"github.com/aluminiapp/pipeline/enricher/internal/pipeline"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
)

type config struct {
	service.Options
	Kafka         kafkaconf.Config
	GroupID       string
	Clients       registry.FileConfig
	VisitorSecret string
	MaxBatch      int
	MaxWait       time.Duration
}

func (c *config) Common() *service.Options { return &c.Options }

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9101")
	c.Kafka.RegisterFlags(fs)
	fs.StringVar(&c.GroupID, "group-id", "alumini-enricher", "Kafka consumer group shared by all enricher instances")
	c.Clients.RegisterFlags(fs)
	fs.StringVar(&c.VisitorSecret, "visitor-secret", "", "secret key of the visitor-id hash, at least 32 characters (required; set it through the environment, not the command line)")
	fs.IntVar(&c.MaxBatch, "batch-max-records", 1000, "most raw hits enriched and written as one batch")
	fs.DurationVar(&c.MaxWait, "batch-max-wait", 50*time.Millisecond, "longest a partial batch waits for more hits")
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
	if c.MaxBatch < 1 || c.MaxWait <= 0 {
		return errors.New("batch-max-records, batch-max-wait must be positive")
	}
	return nil
}

func main() {
	var cfg config
	os.Exit(service.Main("enricher", &cfg, os.Args[1:], func(ctx context.Context, rt *service.Runtime) error {
		return run(ctx, &cfg, rt)
	}))
}

func run(ctx context.Context, cfg *config, rt *service.Runtime) (err error) {
	clients, err := cfg.Clients.Open(ctx, rt.Log)
	if err != nil {
		return err
	}

	if err := cfg.Kafka.EnsureTopics(ctx, cfg.Kafka.RawTopic, cfg.Kafka.EnrichedTopic, cfg.Kafka.DeadLetterTopic); err != nil {
		return err
	}
	p := pipeline.New(pipeline.Config{
		Brokers:         cfg.Kafka.BrokerList(),
		GroupID:         cfg.GroupID,
		RawTopic:        cfg.Kafka.RawTopic,
		EnrichedTopic:   cfg.Kafka.EnrichedTopic,
		DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		MaxBatch:        cfg.MaxBatch,
		MaxWait:         cfg.MaxWait,
	}, enrich.New(clients, visitor.New([]byte(cfg.VisitorSecret))), rt.Log, rt.Metrics)
	defer func() {
		// After Run returned: the batch in hand is written and committed.
		if cerr := p.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing kafka clients: %w", cerr))
		}
	}()
	rt.Health.AddCheck("kafka", cfg.Kafka.Ping)
	rt.Health.Started()
	return p.Run(ctx)
}
