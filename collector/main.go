// Command collector is Alumini's intake: it takes events from websites and
// servers over HTTP and writes them to Kafka's raw topic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on -pprof-addr
	"os"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/collector/internal/clientip"
	"github.com/aluminiapp/pipeline/collector/internal/intake"
	"github.com/aluminiapp/pipeline/collector/internal/publish"
	"github.com/aluminiapp/pipeline/collector/internal/tracker"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/lib/testclock"
)

type config struct {
	service.Options
	Kafka            kafkaconf.Config
	ListenAddr       string
	Clients          registry.FileConfig
	MaxBodyBytes     int
	MaxHeaderBytes   int
	MaxBatchEvents   int
	MaxInflightBytes int64
	MaxConcurrency   int
	TrustedProxies   string
	CookieSecret     string
	ClientRate       float64
	ClientBurst      int
	IPRate           float64
	IPBurst          int
	Paths            intake.Paths
	BatchTimeout     time.Duration
	AckTimeout       time.Duration
	ReadTimeout      time.Duration
	PprofAddr        string
}

func (c *config) Common() *service.Options { return &c.Options }

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9100")
	c.Kafka.RegisterFlags(fs)
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8080", "address of the public intake endpoints")
	c.Clients.RegisterFlags(fs)
	fs.IntVar(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted, before and after gzip decompression; larger ones get 413")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", intake.DefaultMaxHeaderBytes, "largest request head (request line, headers, cookies) read; larger ones get 431. Each connection holds a read buffer of this size")
	fs.IntVar(&c.MaxBatchEvents, "max-batch-events", 500, "most events in one batch request; more get 400")
	fs.Int64Var(&c.MaxInflightBytes, "max-inflight-bytes", 64<<20, "bytes of requests in progress: bodies being read and decoded, and events waiting for Kafka; past it new requests get 503, so memory stays bounded whatever clients send (docs/collector.md, limits and abuse)")
	fs.IntVar(&c.MaxConcurrency, "max-concurrency", 10000, "most connections served at once; more are refused by the server")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of load balancers and proxies whose X-Forwarded-For / X-Real-IP are believed")
	fs.StringVar(&c.CookieSecret, "cookie-secret", "", "key of new visitor cookies in cookie mode, at least 32 characters, the same on every collector (set it through the environment): a new visitor's cookie id is then derived from the client and the event id, so a retry without the cookie after a 503 gets the same visitor; empty: random cookie ids")
	fs.Float64Var(&c.ClientRate, "client-rate-limit", 2000, "events per second accepted per client unless its registry entry sets rate_limit_per_second; 0 for no limit")
	fs.IntVar(&c.ClientBurst, "client-rate-burst", 10000, "events a client may send at once above its rate unless its registry entry sets rate_limit_burst (at least max-batch-events)")
	fs.Float64Var(&c.IPRate, "ip-rate-limit", 50, "requests per second accepted per client address; 0 for no limit")
	fs.IntVar(&c.IPBurst, "ip-rate-burst", 200, "requests one address may send at once above its rate")
	fs.StringVar(&c.Paths.Event, "path-event", intake.DefaultPaths.Event, "path of the one-event endpoint (first-party serving may rename it)")
	fs.StringVar(&c.Paths.Batch, "path-batch", intake.DefaultPaths.Batch, "path of the batch endpoint")
	fs.StringVar(&c.Paths.Pixel, "path-pixel", intake.DefaultPaths.Pixel, "path of the 1x1 GIF beacon")
	fs.StringVar(&c.Paths.Script, "path-script", intake.DefaultPaths.Script, "path of the tracker script")
	fs.StringVar(&c.Paths.OptOut, "path-optout", intake.DefaultPaths.OptOut, "path of the opt-out page")
	fs.StringVar(&c.Paths.OptIn, "path-optin", intake.DefaultPaths.OptIn, "path of the opt-in page")
	fs.DurationVar(&c.BatchTimeout, "kafka-batch-timeout", time.Millisecond, "how long a partition with no produce request in flight waits for more events before sending (0: at once); events that arrive while a request is in flight always go in the next one")
	fs.DurationVar(&c.AckTimeout, "kafka-ack-timeout", 5*time.Second, "how long a request waits for Kafka's acknowledgement before answering 503")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "address for Go's /debug/pprof profiles (loopback only; empty: off)")
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
	if c.MaxBatchEvents < 1 || c.MaxConcurrency < 1 {
		return errors.New("max-batch-events and max-concurrency must be at least 1")
	}
	if c.MaxHeaderBytes < 4096 || c.MaxHeaderBytes > 1<<20 {
		return errors.New("max-header-bytes must be between 4096 and 1048576")
	}
	if c.MaxInflightBytes < int64(9*c.MaxBodyBytes) {
		return errors.New("max-inflight-bytes must be at least nine times max-body-bytes: the largest gzipped Segment batch reserves its body, its decompressed limit (inflated), six times that (decoded) and its encoded events")
	}
	if c.ClientRate < 0 || c.IPRate < 0 || c.ClientBurst < 0 || c.IPBurst < 0 {
		return errors.New("rate limits and bursts must not be negative")
	}
	if c.IPRate > 0 && c.IPBurst < 1 {
		return errors.New("ip-rate-burst must be at least 1 when ip-rate-limit is set")
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		return fmt.Errorf("trusted-proxies: %w", err)
	}
	if c.CookieSecret != "" && len(c.CookieSecret) < 32 {
		return fmt.Errorf("cookie-secret has %d characters; want at least 32 (or none)", len(c.CookieSecret))
	}
	seen := map[string]string{}
	for name, p := range map[string]string{"path-event": c.Paths.Event, "path-batch": c.Paths.Batch, "path-pixel": c.Paths.Pixel,
		"path-script": c.Paths.Script, "path-optout": c.Paths.OptOut, "path-optin": c.Paths.OptIn} {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/v1/") || p == "/healthz" || p == "/readyz" {
			return fmt.Errorf("%s %q: want a path starting with / that is not /v1/..., /healthz or /readyz", name, p)
		}
		if other, dup := seen[p]; dup {
			return fmt.Errorf("%s and %s are both %q", name, other, p)
		}
		seen[p] = name
	}
	if c.BatchTimeout < 0 || c.BatchTimeout > time.Second {
		return errors.New("kafka-batch-timeout must be between 0 and 1s: requests wait for it")
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
	if os.Getenv("GOGC") == "" {
		// Collections half as often as Go's default (100) unless the
		// operator chose: the live heap is small (about 30 MB under load,
		// mostly pools), so the default collected every 2-5 s at 3,000
		// batch requests/s, and on one core each mark phase slows every
		// request of its 10-15 ms. Peak RSS: 103-109 MiB after 256 batch
		// connections (docs/bench/collector.md, sixth round).
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The sizing rule's bound less one budget of headroom, as a soft
		// limit: collections come sooner as memory nears it, so the
		// garbage GOGC=200 lets grow cannot take the process past the
		// documented bound (docs/collector.md, limits and abuse).
		debug.SetMemoryLimit(memoryLimit(cfg.MaxInflightBytes, cfg.MaxConcurrency))
	}
	clients, err := cfg.Clients.Open(ctx, rt.Log)
	if err != nil {
		return err
	}

	// A fresh connection each time: a pooled one or cached metadata kept
	// reporting ready for seconds after the broker was gone
	// (TestReadinessFollowsKafka).
	rt.Health.AddCheck("kafka", cfg.Kafka.Ping)
	// Services start in any order: a broker that is not up yet is waited
	// for (with /readyz saying why), not a reason to stop.
	if err := rt.Dependency("kafka").Retry(ctx, "creating topics", func(ctx context.Context) error {
		return cfg.Kafka.EnsureTopics(ctx, cfg.Kafka.RawTopic)
	}); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for Kafka
		}
		return err
	}
	pub := publish.New(publish.Config{
		Addr:       cfg.Kafka.Addr(),
		Transport:  cfg.Kafka.Transport(),
		Topic:      cfg.Kafka.RawTopic,
		Linger:     cfg.BatchTimeout,
		AckTimeout: cfg.AckTimeout,
	}, rt.Metrics)
	defer func() {
		// Last: the producer flushes only after the server stopped handing it events.
		if cerr := pub.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing kafka producer: %w", cerr))
		}
	}()
	if cfg.PprofAddr != "" {
		// Profiles are for operators measuring a live collector; they go on
		// their own listener so the public port never exposes them.
		pprofSrv := &http.Server{Addr: cfg.PprofAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := pprofSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				rt.Log.Error("pprof server", zap.Error(err))
			}
		}()
		defer func() {
			if cerr := pprofSrv.Close(); cerr != nil {
				rt.Log.Warn("closing pprof server", zap.Error(cerr))
			}
		}()
	}

	proxies, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return err
	}

	h := intake.New(intake.Config{
		Clients:          clients,
		Publisher:        pub,
		Health:           rt.Health,
		Log:              rt.Log,
		Metrics:          rt.Metrics,
		Proxies:          proxies,
		Paths:            cfg.Paths,
		Script:           tracker.Script(cfg.Paths.Event),
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxBatchEvents:   cfg.MaxBatchEvents,
		MaxInflightBytes: cfg.MaxInflightBytes,
		ClientRate:       cfg.ClientRate,
		ClientBurst:      cfg.ClientBurst,
		IPRate:           cfg.IPRate,
		IPBurst:          cfg.IPBurst,
		CookieSecret:     []byte(cfg.CookieSecret),
		// The wall clock, unless an end-to-end test sets it (lib/testclock).
		Now: testclock.FromEnv(),
	})
	srv := intake.NewServer(h, intake.ServerConfig{
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		MaxConcurrency: cfg.MaxConcurrency,
		ReadTimeout:    cfg.ReadTimeout,
		WriteTimeout:   cfg.AckTimeout + 5*time.Second,
	})
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

// memoryLimit is the collector's default soft memory limit: a base for
// the runtime, pools and metrics, twice the in-flight budget (its bytes,
// and the garbage they leave), and each connection's buffers.
func memoryLimit(inflight int64, conns int) int64 {
	return 48<<20 + 2*inflight + int64(conns)*32<<10
}
