// Command collector is Alumini's intake: it takes events from websites and
// servers over HTTP and writes them to Kafka's raw topic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/collector/internal/intake"
	"github.com/aluminiapp/pipeline/collector/internal/publish"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
)

type config struct {
	service.Options
	Kafka        kafkaconf.Config
	ListenAddr   string
	Clients      registry.FileConfig
	MaxBodyBytes int
	BatchTimeout time.Duration
	AckTimeout   time.Duration
	ReadTimeout  time.Duration
}

func (c *config) Common() *service.Options { return &c.Options }

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9100")
	c.Kafka.RegisterFlags(fs)
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8080", "address of the public intake endpoints")
	c.Clients.RegisterFlags(fs)
	fs.IntVar(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted; larger ones get 413")
	fs.DurationVar(&c.BatchTimeout, "kafka-batch-timeout", 2*time.Millisecond, "how long the producer waits to fill a batch before sending it")
	fs.DurationVar(&c.AckTimeout, "kafka-ack-timeout", 5*time.Second, "how long a request waits for Kafka's acknowledgement before answering 503")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 10*time.Second, "how long a client may take to send a request")
}

func (c *config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("listen-addr %q: %w", c.ListenAddr, err)
	}
	if err := c.Clients.Validate(); err != nil {
		return err
	}
	if c.MaxBodyBytes < 1024 {
		return errors.New("max-body-bytes must be at least 1024")
	}
	if c.BatchTimeout <= 0 || c.BatchTimeout > time.Second {
		return errors.New("kafka-batch-timeout must be between 0 and 1s: every request waits for it")
	}
	if c.AckTimeout <= 0 || c.ReadTimeout <= 0 {
		return errors.New("kafka-ack-timeout, read-timeout must be positive")
	}
	return nil
}

func main() {
	var cfg config
	os.Exit(service.Main("collector", &cfg, os.Args[1:], func(ctx context.Context, rt *service.Runtime) error {
		return run(ctx, &cfg, rt)
	}))
}

func run(ctx context.Context, cfg *config, rt *service.Runtime) (err error) {
	clients, err := cfg.Clients.Open(ctx, rt.Log)
	if err != nil {
		return err
	}

	if err := cfg.Kafka.EnsureTopics(ctx, cfg.Kafka.RawTopic); err != nil {
		return err
	}
	pub := publish.New(publish.Config{
		Addr:         cfg.Kafka.Addr(),
		Topic:        cfg.Kafka.RawTopic,
		BatchTimeout: cfg.BatchTimeout,
		AckTimeout:   cfg.AckTimeout,
	}, rt.Metrics)
	defer func() {
		// Last: the producer flushes only after the server stopped handing it events.
		if cerr := pub.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing kafka producer: %w", cerr))
		}
	}()
	rt.Health.AddCheck("kafka", cfg.Kafka.Ping)

	h := intake.New(clients, pub, rt.Health, rt.Log, rt.Metrics)
	srv := &fasthttp.Server{
		Handler:            h.Serve,
		ErrorHandler:       h.ServeError,
		Name:               "alumini",
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.AckTimeout + 5*time.Second,
		IdleTimeout:        60 * time.Second,
		NoDefaultDate:      true,
		Logger:             zap.NewStdLog(rt.Log),
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	rt.Log.Info("collector listening", zap.String("addr", ln.Addr().String()))
	rt.Health.Started()

	select {
	case err := <-serveErr:
		return fmt.Errorf("intake server: %w", err)
	case <-ctx.Done():
	}
	// Stop intake: refuse new connections and wait for in-flight requests,
	// each of which waits for its Kafka acknowledgement.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.AckTimeout+5*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(shutdownCtx); err != nil {
		return fmt.Errorf("stopping intake server: %w", err)
	}
	return nil
}
