package main

import (
	"flag"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	"github.com/aluminiapp/pipeline/reporter/internal/api"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// config is the reporter's whole configuration.
type config struct {
	service.Options
	ListenAddr   string
	Clients      registry.FileConfig
	ClickHouse   chconf.Config
	QueryTimeout time.Duration
	// OperatorKeyHash is registry.HashAPIKey of the operator key: the
	// plain key never sits in a flag, an environment or a process list.
	OperatorKeyHash  string
	RateLimit        float64
	RateBurst        int
	AuthFailureRate  float64
	AuthFailureBurst int
	ErasureRate      float64
	ErasureBurst     int
	LimiterEntries   int
	ErasureInterval  time.Duration
	MaxRows          int
	MaxExport        int
	TrendsMinClients int
	SampleAbove      uint64
	RollUp           bool
	// SampleRolledAbove is -sample-rolled-above-events.
	SampleRolledAbove uint64
}

// RegisterFlags adds the reporter's flags to the common ones.
func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9103")
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8081", "address of the reporting API and dashboard")
	c.Clients.RegisterFlags(fs)
	c.ClickHouse.RegisterFlags(fs)
	fs.DurationVar(&c.QueryTimeout, "query-timeout", 10*time.Second, "longest a report query may run before the request fails with 504")
	fs.StringVar(&c.OperatorKeyHash, "operator-key-hash", "", "sha256:<hex> hash of the operator key (`reporter clients hash-key` prints it); empty turns the operator endpoints off")
	fs.Float64Var(&c.RateLimit, "rate-limit", 10, "requests per second one API key may make on average")
	fs.IntVar(&c.RateBurst, "rate-burst", 30, "requests one API key may make at once (the dashboard makes 11 per refresh)")
	fs.Float64Var(&c.AuthFailureRate, "auth-failure-rate", api.DefaultAuthFailureRate, "failed authentications per second one client address (TCP peer; IPv6 by /64) may make on average; over it every request of the address gets 429")
	fs.IntVar(&c.AuthFailureBurst, "auth-failure-burst", api.DefaultAuthFailureBurst, "failed authentications one client address may make at once")
	fs.Float64Var(&c.ErasureRate, "erasure-rate", api.DefaultErasureRate, "erasure requests per second one client may make on average")
	fs.IntVar(&c.ErasureBurst, "erasure-burst", api.DefaultErasureBurst, "erasure requests one client may make at once")
	fs.IntVar(&c.LimiterEntries, "limiter-entries", api.DefaultLimiterEntries, "most keys, addresses and clients each rate limiter table tracks; the least used are forgotten beyond it")
	fs.DurationVar(&c.ErasureInterval, "erasure-interval", query.DefaultErasureInterval, "how often pending erasures are carried out: one DELETE mutation per table covers every erasure requested meanwhile")
	fs.IntVar(&c.MaxRows, "max-rows", 1000, "most rows a breakdown may return")
	fs.IntVar(&c.MaxExport, "max-export-events", 100000, "most events one visitor export may return")
	fs.IntVar(&c.TrendsMinClients, "trends-min-clients", 5, "fewest clients a cross-client trends row may describe")
	fs.Uint64Var(&c.SampleAbove, "sample-above-events", query.DefaultSampleAbove, "reports over more events than this (one client, one range) count a sample of the visitors, one in 2, 5, 10, 20, ..., and scale up (sample_rate in the answer); 0 always counts every event; reports answered from rolled-up sessions are never sampled")
	fs.Uint64Var(&c.SampleRolledAbove, "sample-rolled-above-events", query.DefaultSampleRolledAbove, "reports answered from rolled-up sessions (see -roll-up) count a sample only over this many events (one client, one range); 0 never samples them")
	fs.BoolVar(&c.RollUp, "roll-up", true, "roll up each finished UTC day's visits (every -erasure-interval) and answer the unfiltered aggregate, time series and visit-level breakdowns exactly from them; false reads events only")
}

// Common returns the settings every service has.
func (c *config) Common() *service.Options { return &c.Options }

var keyHashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Validate reports the first bad reporter setting.
func (c *config) Validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("listen-addr %q: %w", c.ListenAddr, err)
	}
	if err := c.Clients.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	switch {
	case c.QueryTimeout <= 0:
		return fmt.Errorf("query-timeout %s: must be positive", c.QueryTimeout)
	case c.OperatorKeyHash != "" && !keyHashPattern.MatchString(c.OperatorKeyHash):
		return fmt.Errorf("operator-key-hash: want sha256:<64 hex digits>, the hash of the key, never the key")
	case c.RateLimit <= 0 || c.RateBurst < 1:
		return fmt.Errorf("rate-limit and rate-burst must be positive")
	case c.AuthFailureRate <= 0 || c.AuthFailureBurst < 1 || c.ErasureRate <= 0 || c.ErasureBurst < 1 || c.LimiterEntries < 1:
		return fmt.Errorf("auth-failure-rate, auth-failure-burst, erasure-rate, erasure-burst and limiter-entries must be positive")
	case c.ErasureInterval < time.Second:
		return fmt.Errorf("erasure-interval %s: must be at least 1s", c.ErasureInterval)
	case c.MaxRows < 1 || c.MaxExport < 1:
		return fmt.Errorf("max-rows and max-export-events must be positive")
	case c.TrendsMinClients < 2:
		return fmt.Errorf("trends-min-clients %d: must be at least 2, or one client could be singled out", c.TrendsMinClients)
	}
	return nil
}
