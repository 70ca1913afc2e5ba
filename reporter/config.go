package main

import (
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
)

// config is the reporter's whole configuration.
type config struct {
	service.Options
	ListenAddr   string
	Clients      registry.FileConfig
	ClickHouse   chconf.Config
	QueryTimeout time.Duration
}

// RegisterFlags adds the reporter's flags to the common ones.
func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Options.RegisterFlags(fs, "127.0.0.1:9103")
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8081", "address of the reporting API")
	c.Clients.RegisterFlags(fs)
	c.ClickHouse.RegisterFlags(fs)
	fs.DurationVar(&c.QueryTimeout, "query-timeout", 10*time.Second, "longest a report query may run before the request fails with 504")
}

// Common returns the settings every service has.
func (c *config) Common() *service.Options { return &c.Options }

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
	if c.QueryTimeout <= 0 {
		return fmt.Errorf("query-timeout %s: must be positive", c.QueryTimeout)
	}
	return nil
}
