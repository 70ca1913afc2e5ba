// Command seed-and-measure is the reporter's benchmark (issue 6): it seeds
// a fresh ClickHouse database with synthetic events of many clients, then,
// for the largest client over 30 days, times the aggregate, the time series
// and every breakdown through the reporter's HTTP API and the very same SQL
// run directly with clickhouse-client, and prints p50/p95 and the
// reporter's overhead as a Markdown table (docs/bench/reporter.md).
//
//	go run ./bench/seed-and-measure -events 10000000
//
// It is a separate program, not a test: seeding 10 million events takes
// minutes and both cores.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// config is the benchmark's whole configuration.
type config struct {
	Addr         string
	ClientBinary string
	Database     string
	Events       int
	Clients      int
	LargestShare float64
	Days         int
	Warmup, Reps int
	Seed         uint64
	// Reuse skips seeding when the database already holds Events events,
	// so the measurement can be repeated without minutes of seeding.
	Reuse bool
	// Keep leaves the database in place after the run (Reuse needs it).
	Keep bool
	// SampleAbove is the reporter's -sample-above-events.
	SampleAbove uint64
	// RollUp makes the reporter roll up sessions first and answer the
	// reports it can from them.
	RollUp bool
	// SQLOut, when set, is a file to write each report's SQL to, one
	// statement a line, instead of measuring.
	SQLOut string
	// SampleRolledAbove is the reporter's -sample-rolled-above-events.
	SampleRolledAbove uint64
	// End is the exclusive end of the seeded range (midnight UTC); zero
	// means today.
	End time.Time
}

func (c *config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse-addr", chtest.Addr(), "ClickHouse native address (default $CLICKHOUSE_ADDR or 127.0.0.1:19000)")
	fs.StringVar(&c.ClientBinary, "clickhouse-client", "clickhouse-client", "clickhouse-client binary the direct SQL is timed with")
	fs.StringVar(&c.Database, "database", "reporter_bench", "database to (re)create and seed; it is dropped first unless -reuse finds it complete")
	fs.IntVar(&c.Events, "events", 10_000_000, "events to seed across all clients")
	fs.IntVar(&c.Clients, "clients", 50, "clients to spread the events over")
	fs.Float64Var(&c.LargestShare, "largest-share", 0.3, "share of the events that belong to the largest client (the one measured)")
	fs.IntVar(&c.Days, "days", 30, "days the events span, ending at midnight UTC today; the report covers all of them")
	fs.IntVar(&c.Warmup, "warmup", 0, "untimed runs of each query before timing (the seeding has just put the data in the page cache)")
	fs.IntVar(&c.Reps, "reps", 2, "timed runs of each query through the API and through clickhouse-client")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed of the synthetic data")
	fs.BoolVar(&c.Reuse, "reuse", false, "do not reseed when the database already holds -events events")
	fs.BoolVar(&c.Keep, "keep", false, "keep the database after the run")
	fs.BoolVar(&c.RollUp, "roll-up", true, "the reporter's -roll-up: roll up the finished days' sessions before measuring, and answer the unfiltered aggregate, time series and visit-level breakdowns exactly from them")
	fs.StringVar(&c.SQLOut, "sql-out", "", "write each report's SQL (as clickhouse-client would run it, one a line, after a '-- name' line) to this file and stop, for timing by hand")
	fs.Uint64Var(&c.SampleRolledAbove, "sample-rolled-above-events", query.DefaultSampleRolledAbove, "the reporter's -sample-rolled-above-events: reports answered from rolled-up sessions count a sample only over this many events; 0 never samples them")
	fs.Uint64Var(&c.SampleAbove, "sample-above-events", query.DefaultSampleAbove, "the reporter's -sample-above-events: reports over more events count a sample of the visitors; 0 counts every event")
}

func (c *config) validate() error {
	switch {
	case c.Events < 1000:
		return errors.New("-events: at least 1000")
	case c.Clients < 2 || c.Clients > 1000:
		return errors.New("-clients: 2-1000")
	case c.LargestShare <= 0 || c.LargestShare >= 1:
		return errors.New("-largest-share: between 0 and 1")
	case c.Days < 1 || c.Days > 365:
		return errors.New("-days: 1-365")
	case c.Warmup < 0 || c.Reps < 1:
		return errors.New("-warmup must not be negative and -reps must be positive")
	case !validDatabase(c.Database):
		return fmt.Errorf("-database %q: want letters, digits and _", c.Database)
	}
	return nil
}

func validDatabase(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func main() {
	var cfg config
	cfg.registerFlags(flag.CommandLine)
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "seed-and-measure:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seed-and-measure:", err)
		os.Exit(1)
	}
}
