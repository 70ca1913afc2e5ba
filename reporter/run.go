package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/periodic"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/reporter/internal/api"
	"github.com/aluminiapp/pipeline/reporter/internal/clientfile"
	"github.com/aluminiapp/pipeline/reporter/internal/dashboard"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// run serves the API until ctx is cancelled.
//
// Shutdown order: service.Main has already turned /readyz false and waited
// the drain delay when ctx ends; then the HTTP server stops accepting and
// waits for the requests in flight (which need ClickHouse), and only then
// is the ClickHouse connection closed.
func (c *config) run(ctx context.Context, rt *service.Runtime) error {
	reg, err := c.Clients.Open(ctx, rt.Log)
	if err != nil {
		return err
	}

	// The reporter may start before the sinker: it makes the database and
	// applies the same migrations (store.Init). ClickHouse may not be up
	// yet either: that is waited for, with /readyz saying why.
	chDep := rt.Dependency("clickhouse")
	rt.Health.AddCheck("clickhouse_startup", chDep.Check)
	if err := chDep.Retry(ctx, "creating the database", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return c.ClickHouse.CreateDatabase(ctx)
	}); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		return err
	}
	conn, err := c.ClickHouse.Open()
	if err != nil {
		return err
	}
	closeConn := func() error {
		if err := conn.Close(); err != nil {
			rt.Log.Error("closing clickhouse connection", zap.Error(err))
			return fmt.Errorf("closing clickhouse connection: %w", err)
		}
		return nil
	}
	rt.Health.AddCheck("clickhouse", conn.Ping)

	store, err := query.NewStore(conn, rt.Metrics, c.QueryTimeout)
	if err != nil {
		return errors.Join(err, closeConn())
	}
	if c.ClickHouse.Cluster != "" {
		store.OnCluster(c.ClickHouse.Database, c.ClickHouse.Cluster)
	}
	store.SampleAbove(c.SampleAbove)
	// No deadline of its own, as the sinker's: a migration may copy the
	// events table (schema version 5).
	rolled := false
	err = chDep.Retry(ctx, "migrating the database", func(ctx context.Context) error {
		if err := store.Init(ctx, rt.Log); err != nil || !c.RollUp {
			return err
		}
		rolled, err = store.RollUp(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return closeConn()
		}
		return errors.Join(err, closeConn())
	}
	store.SampleRolledAbove(c.SampleRolledAbove)
	if c.RollUp && !rolled {
		rt.Log.Warn("reports read events only: rolled-up sessions are not made on a cluster")
	}
	apiHandler, err := api.New(api.Config{
		Registry:         reg,
		Store:            store,
		Clients:          clientfile.New(c.Clients.Path),
		OperatorKeyHash:  c.OperatorKeyHash,
		Log:              rt.Log,
		Metrics:          rt.Metrics,
		QueryTimeout:     c.QueryTimeout,
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		AuthFailureRate:  c.AuthFailureRate,
		AuthFailureBurst: c.AuthFailureBurst,
		ErasureRate:      c.ErasureRate,
		ErasureBurst:     c.ErasureBurst,
		LimiterEntries:   c.LimiterEntries,
		MaxRows:          c.MaxRows,
		MaxExport:        c.MaxExport,
		TrendsMinClients: c.TrendsMinClients,
	})
	if err != nil {
		return errors.Join(err, closeConn())
	}
	handler := routes(apiHandler, dashboard.Handler())

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
	// Erasures finish in the background too: their mutations start in
	// batches and, once done, the erasures are recorded as finished,
	// whether or not anyone asks for the status.
	erasuresCtx, stopErasures := context.WithCancel(context.Background())
	erasuresDone := make(chan struct{})
	go func() {
		defer close(erasuresDone)
		finishErasures(erasuresCtx, store, c.ErasureInterval, c.QueryTimeout, rt.Log)
	}()
	rt.Health.Started()
	rt.Log.Info("serving the API", zap.String("listen_addr", ln.Addr().String()),
		zap.String("clickhouse_addr", c.ClickHouse.Addr), zap.String("clickhouse_database", c.ClickHouse.Database))

	select {
	case err := <-served:
		// Serve only returns early on a listener failure.
		stopErasures()
		<-erasuresDone
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
	// The erasure finisher uses ClickHouse: stop it before closing.
	stopErasures()
	<-erasuresDone
	errs = append(errs, closeConn())
	return errors.Join(errs...)
}

// rollTimeout bounds one run of store.Roll: its budget plus a statement.
const rollTimeout = 5 * time.Minute

// finishErasures calls store.FinishErasures every interval until ctx
// ends: each run starts at most one mutation per table. Then it rolls up
// the sessions of the days that changed (store.Roll).
func finishErasures(ctx context.Context, store *query.Store, interval, timeout time.Duration, log *zap.Logger) {
	periodic.Run(ctx, interval, func() {
		// Rebuilding views re-aggregates whole days: give it more than a
		// report query.
		runCtx, cancel := context.WithTimeout(ctx, 6*timeout)
		defer cancel()
		if left, err := store.FinishErasures(runCtx); err != nil && ctx.Err() == nil {
			log.Error("finishing erasures", zap.Error(err), zap.Int("pending", left))
		}
		again, err := store.EraseReturned(runCtx, time.Now())
		if err != nil && ctx.Err() == nil {
			log.Error("erasing replayed events of erased visitors", zap.Error(err))
		}
		if again > 0 {
			log.Info("audit: replayed events of erased visitors erased again", zap.Int("visitors", again))
		}
		// After the erasures, in the same loop: see query.Store.Roll. A
		// roll statement may take longer than a report, not than this.
		rollCtx, cancelRoll := context.WithTimeout(ctx, rollTimeout)
		defer cancelRoll()
		if left, err := store.Roll(rollCtx, time.Now()); err != nil && ctx.Err() == nil {
			log.Error("rolling up sessions", zap.Error(err), zap.Int("client_days_left", left))
		}
	})
}

// routes sends /api/ to the API and everything else to the dashboard.
func routes(apiHandler, dash http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			apiHandler.ServeHTTP(w, r)
			return
		}
		dash.ServeHTTP(w, r)
	})
}
