// Package chconf holds the ClickHouse settings the sinker and reporter share
// and opens native-protocol connections with them.
package chconf

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/tlsfiles"
)

// Config says where ClickHouse is and who the service is there.
type Config struct {
	Addr     string
	Database string
	User     string
	Password string
	// TLS protects the connection (the secure native port, 9440 by
	// default on the server): events carry visitor data.
	TLS           bool
	TLSCAFile     string
	TLSServerName string
	// Cluster names the cluster (remote_servers) of the sinker's cluster
	// mode: replicated tables under Distributed ones, DDL and mutations ON
	// CLUSTER. Empty for one server. The sinker and the reporter must agree.
	Cluster string
}

// RegisterFlags adds the ClickHouse flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse-addr", "127.0.0.1:9000", "ClickHouse native-protocol address, host:port")
	fs.StringVar(&c.Database, "clickhouse-database", "alumini", "ClickHouse database of the events table")
	fs.StringVar(&c.User, "clickhouse-user", "default", "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse-password", "", "ClickHouse password (prefer the environment variable to the flag, which shows in process lists)")
	fs.BoolVar(&c.TLS, "clickhouse-tls", false, "connect over TLS (point -clickhouse-addr at the server's secure native port)")
	fs.StringVar(&c.TLSCAFile, "clickhouse-tls-ca-file", "", "PEM file of the CAs that sign the server's certificate (default: the system's)")
	fs.StringVar(&c.TLSServerName, "clickhouse-tls-server-name", "", "name to verify in the server's certificate (default: the host of -clickhouse-addr)")
	fs.StringVar(&c.Cluster, "clickhouse-cluster", "", "ClickHouse cluster name (remote_servers) for cluster mode: replicated tables under Distributed ones, DDL and mutations ON CLUSTER; empty for one server (sinker and reporter must agree)")
}

// ErrBadDatabaseName is returned for a database name that would need quoting.
var ErrBadDatabaseName = errors.New("database name must be letters, digits and underscores, not starting with a digit")

var databaseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ErrBadClusterName is returned for a cluster name that would need quoting.
var ErrBadClusterName = errors.New("cluster name must be letters, digits, '_' and '-'")

// clusterName is what -clickhouse-cluster accepts; it goes into statements
// between backquotes.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CheckNames reports whether a database name and a cluster name (empty:
// none) are what -clickhouse-database and -clickhouse-cluster accept. Both
// are written into statements (the database unquoted into CREATE DATABASE,
// both into the ON CLUSTER DDL and mutations of the sinker and reporter),
// so whoever writes them checks them here.
func CheckNames(database, cluster string) error {
	if !databaseName.MatchString(database) {
		return fmt.Errorf("clickhouse-database %q: %w", database, ErrBadDatabaseName)
	}
	if cluster != "" && !clusterName.MatchString(cluster) {
		return fmt.Errorf("clickhouse-cluster %q: %w", cluster, ErrBadClusterName)
	}
	return nil
}

// Validate reports the first bad ClickHouse setting.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("clickhouse-addr %q: %w", c.Addr, err)
	}
	if err := CheckNames(c.Database, c.Cluster); err != nil {
		return err
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		if c.TLSCAFile != "" || c.TLSServerName != "" {
			return nil, errors.New("clickhouse-tls-ca-file and clickhouse-tls-server-name need -clickhouse-tls")
		}
		return nil, nil
	}
	tc, err := tlsfiles.Client("clickhouse-tls", c.TLSCAFile, "", "", c.TLSServerName)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// Open connects with the configured database as the default one.
func (c *Config) Open() (driver.Conn, error) { return c.open(c.Database) }

func (c *Config) open(database string) (driver.Conn, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{c.Addr},
		TLS:  tc,
		Auth: clickhouse.Auth{Database: database, Username: c.User, Password: c.Password},
		// Inserts are large and text-heavy: LZ4 makes them several times
		// smaller on the wire for little CPU.
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		// Fail fast on an unreachable server; query contexts bound the rest.
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse at %s: %w", c.Addr, err)
	}
	return conn, nil
}

// CreateDatabase creates the configured database when it is missing.
func (c *Config) CreateDatabase(ctx context.Context) error {
	if err := c.Validate(); err != nil {
		return err
	}
	admin, err := c.open("default")
	if err != nil {
		return err
	}
	stmt := "CREATE DATABASE IF NOT EXISTS " + c.Database
	if c.Cluster != "" {
		// On every node: the schema's cluster DDL runs ON CLUSTER, in
		// this database.
		stmt += " ON CLUSTER `" + c.Cluster + "`"
	}
	createErr := admin.Exec(ctx, stmt)
	if cerr := admin.Close(); cerr != nil {
		createErr = errors.Join(createErr, fmt.Errorf("closing clickhouse connection: %w", cerr))
	}
	if createErr != nil {
		return fmt.Errorf("creating database %s at %s: %w", c.Database, c.Addr, createErr)
	}
	return nil
}
