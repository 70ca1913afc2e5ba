package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/reporter/internal/api"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// registryReloadInterval is how often the client registry file is re-read.
const registryReloadInterval = 2 * time.Second

// run serves the API until ctx is cancelled.
//
// Shutdown order: service.Main has already turned /readyz false and waited
// the drain delay when ctx ends; then the HTTP server stops accepting and
// waits for the requests in flight (which need ClickHouse), and only then
// is the ClickHouse connection closed.
func (c *config) run(ctx context.Context, rt *service.Runtime) error {
	reg, err := registry.OpenFile(c.ClientsFile)
	if err != nil {
		return err
	}
	go reg.Watch(ctx, registryReloadInterval, rt.Log)

	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{c.ClickHouseAddr},
		Auth: clickhouse.Auth{Database: c.ClickHouseDatabase, Username: c.ClickHouseUser, Password: c.ClickHousePassword},
		// Fail fast on an unreachable server; the query timeout bounds the rest.
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("clickhouse at %s: %w", c.ClickHouseAddr, err)
	}
	closeConn := func() error {
		if err := conn.Close(); err != nil {
			rt.Log.Error("closing clickhouse connection", zap.Error(err))
			return fmt.Errorf("closing clickhouse connection: %w", err)
		}
		return nil
	}
	rt.Health.AddCheck("clickhouse", conn.Ping)

	store, err := query.NewStore(conn, rt.Metrics)
	if err != nil {
		return errors.Join(err, closeConn())
	}
	handler, err := api.New(api.Config{
		Registry:     reg,
		Store:        store,
		Log:          rt.Log,
		Metrics:      rt.Metrics,
		QueryTimeout: c.QueryTimeout,
	})
	if err != nil {
		return errors.Join(err, closeConn())
	}

	ln, err := net.Listen("tcp", c.ListenAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("api listener: %w", err), closeConn())
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A request may wait for its query, then needs time to write.
		WriteTimeout:   c.QueryTimeout + 10*time.Second,
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       zap.NewStdLog(rt.Log),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	rt.Health.Started()
	rt.Log.Info("serving the API", zap.String("listen_addr", ln.Addr().String()),
		zap.String("clickhouse_addr", c.ClickHouseAddr), zap.String("clickhouse_database", c.ClickHouseDatabase))

	select {
	case err := <-served:
		// Serve only returns early on a listener failure.
		return errors.Join(fmt.Errorf("api server: %w", err), closeConn())
	case <-ctx.Done():
	}

	// Main bounds the whole shutdown by the shutdown timeout; leave a
	// little of it for closing ClickHouse after the server.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout*9/10)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(shutdownCtx); err != nil {
		rt.Log.Error("api server shutdown; closing the remaining connections", zap.Error(err))
		errs = append(errs, fmt.Errorf("api server shutdown: %w", err))
		if err := srv.Close(); err != nil {
			rt.Log.Error("closing api server", zap.Error(err))
			errs = append(errs, fmt.Errorf("closing api server: %w", err))
		}
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		rt.Log.Error("api server", zap.Error(err))
		errs = append(errs, fmt.Errorf("api server: %w", err))
	}
	errs = append(errs, closeConn())
	return errors.Join(errs...)
}
