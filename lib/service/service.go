// Package service runs an Alumini daemon: configuration from flags and
// environment, zap logging, Prometheus metrics, health and readiness
// endpoints, and the ordered graceful shutdown every service shares.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aluminiapp/pipeline/lib/envflag"
	"github.com/aluminiapp/pipeline/lib/outage"
)

// Options are the settings every service has.
type Options struct {
	AdminAddr       string
	LogLevel        string
	LogFormat       string
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
}

// RegisterFlags adds the common flags; adminAddr is the service's default
// address for /metrics, /healthz and /readyz.
func (o *Options) RegisterFlags(fs *flag.FlagSet, adminAddr string) {
	fs.StringVar(&o.AdminAddr, "admin-addr", adminAddr, "address for /metrics, /healthz and /readyz")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "json", "log format: json (for log shippers) or console (for people)")
	fs.DurationVar(&o.DrainDelay, "drain-delay", 0, "after SIGTERM, how long /readyz reports not ready before intake stops, so load balancers stop sending first (5s behind a load balancer)")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long the service may take to flush and close after intake stopped")
}

// Validate reports the first bad common setting.
func (o *Options) Validate() error {
	if _, _, err := net.SplitHostPort(o.AdminAddr); err != nil {
		return fmt.Errorf("admin-addr %q: %w", o.AdminAddr, err)
	}
	if _, err := zapcore.ParseLevel(o.LogLevel); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	if o.LogFormat != "json" && o.LogFormat != "console" {
		return fmt.Errorf("log-format %q: want json or console", o.LogFormat)
	}
	if o.DrainDelay < 0 || o.ShutdownTimeout <= 0 {
		return errors.New("drain-delay must not be negative and shutdown-timeout must be positive")
	}
	return nil
}

// Config is a service's whole configuration.
type Config interface {
	RegisterFlags(fs *flag.FlagSet)
	Validate() error
	Common() *Options
}

// Runtime is what a running service is handed.
type Runtime struct {
	Name    string
	Log     *zap.Logger
	Metrics *prometheus.Registry
	Health  *Health

	depsOnce sync.Once
	deps     *outage.Monitor
}

// Dependency returns the outage tracker of a dependency (Kafka,
// ClickHouse): retries, one log line per change, alumini_dependency_*
// metrics. Call it once per name.
func (rt *Runtime) Dependency(name string) *outage.Dependency {
	rt.depsOnce.Do(func() { rt.deps = outage.NewMonitor(rt.Log, rt.Metrics) })
	return rt.deps.Dependency(name)
}

// Main parses cfg from args and the environment, validates it, sets up
// logging, metrics and the admin endpoints, and calls run with a context that
// is cancelled on SIGINT or SIGTERM. It returns the process exit code.
//
// Shutdown order: on the first signal /readyz turns 503 (draining) and stays
// so for the drain delay while intake continues, so load balancers stop
// sending; then run's context is cancelled and run must stop intake, flush
// what it holds and close its clients, within the shutdown timeout; the admin
// endpoints stop last so metrics can be scraped until the end. A second
// signal exits at once.
func Main(name string, cfg Config, args []string, run func(ctx context.Context, rt *Runtime) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.Usage = envflag.Usage(fs)
	if err := envflag.Parse(fs, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	if err := cfg.Common().Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid configuration: %v\n", name, err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid configuration: %v\n", name, err)
		return 2
	}
	opts := cfg.Common()
	log, err := NewLogger(opts.LogLevel, opts.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	log = log.With(zap.String("service", name))
	defer func() { _ = log.Sync() }() // Sync fails on terminals (ENOTTY/EINVAL); nothing to do about it at exit.

	rt := &Runtime{Name: name, Log: log, Metrics: NewRegistry(name), Health: NewHealth()}

	admin, err := net.Listen("tcp", opts.AdminAddr)
	if err != nil {
		log.Error("admin listener", zap.Error(err))
		return 1
	}
	adminSrv := &http.Server{Handler: rt.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := adminSrv.Serve(admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", zap.Error(err))
		}
	}()
	log.Info("starting", zap.String("admin_addr", admin.Addr().String()), zap.String("version", Version()))

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, rt) }()

	code := 0
	select {
	case err := <-done:
		// run ended by itself: a startup failure or a fatal error.
		if err != nil {
			log.Error("stopped", zap.Error(err))
			code = 1
		}
	case sig := <-signals:
		log.Info("shutting down", zap.Stringer("signal", sig), zap.Duration("drain_delay", opts.DrainDelay))
		rt.Health.SetDraining()
		select {
		case <-time.After(opts.DrainDelay):
		case <-signals:
			log.Warn("second signal: exiting now")
			return 1
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				log.Error("shutdown", zap.Error(err))
				code = 1
			}
		case <-time.After(opts.ShutdownTimeout):
			log.Error("shutdown timed out", zap.Duration("timeout", opts.ShutdownTimeout))
			code = 1
		case <-signals:
			log.Warn("second signal: exiting now")
			return 1
		}
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := adminSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("admin server shutdown", zap.Error(err))
	}
	log.Info("stopped")
	return code
}

// AdminHandler serves /metrics, /healthz and /readyz.
func (rt *Runtime) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(rt.Metrics, promhttp.HandlerOpts{Registry: rt.Metrics, ErrorLog: zap.NewStdLog(rt.Log)}))
	mux.HandleFunc("/healthz", rt.Health.ServeLive)
	mux.HandleFunc("/readyz", rt.Health.ServeReady)
	return mux
}

// NewLogger builds the zap logger services use.
func NewLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}

// NewRegistry returns a metrics registry with the Go runtime and process
// collectors and an alumini_build_info gauge naming the service.
func NewRegistry(name string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "alumini_build_info",
		Help: "Always 1; labels say which service and version is running.",
	}, []string{"service", "version"})
	info.WithLabelValues(name, Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

// Version is the module version the binary was built from, or "devel".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
