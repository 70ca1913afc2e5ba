package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/aluminiapp/pipeline/lib/service"
)

// config is the reporter's whole configuration.
type config struct {
	service.Options
	ListenAddr         string
	ClientsFile        string
	ClickHouseAddr     string
	ClickHouseDatabase string
	ClickHouseUser     string
	ClickHousePassword string
	QueryTimeout       time.Duration
}

// RegisterFlags adds the reporter's flags to the common ones.
func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9103")
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8081", "address of the reporting API")
	fs.StringVar(&c.ClientsFile, "clients-file", "", "client registry YAML file, reloaded when it changes (required)")
	fs.StringVar(&c.ClickHouseAddr, "clickhouse-addr", "127.0.0.1:9000", "ClickHouse native protocol address, host:port")
	fs.StringVar(&c.ClickHouseDatabase, "clickhouse-database", "alumini", "ClickHouse database holding the events table")
	fs.StringVar(&c.ClickHouseUser, "clickhouse-user", "", "ClickHouse user; empty means the server's default user")
	fs.StringVar(&c.ClickHousePassword, "clickhouse-password", "", "ClickHouse password (prefer the environment variable to the flag, which shows in process lists)")
	fs.DurationVar(&c.QueryTimeout, "query-timeout", 10*time.Second, "longest a report query may run before the request fails with 504")
}

// Common returns the settings every service has.
func (c *config) Common() *service.Options { return &c.Options }

// Validate reports the first bad reporter setting.
func (c *config) Validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("listen-addr %q: %w", c.ListenAddr, err)
	}
	if c.ClientsFile == "" {
		return errors.New("clients-file is required: the client registry YAML that holds the API key hashes")
	}
	if _, _, err := net.SplitHostPort(c.ClickHouseAddr); err != nil {
		return fmt.Errorf("clickhouse-addr %q: %w", c.ClickHouseAddr, err)
	}
	if c.ClickHouseDatabase == "" {
		return errors.New("clickhouse-database must not be empty")
	}
	if c.QueryTimeout <= 0 {
		return fmt.Errorf("query-timeout %s: must be positive", c.QueryTimeout)
	}
	return nil
}
