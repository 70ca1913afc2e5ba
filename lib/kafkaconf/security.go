package kafkaconf

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"
	franzplain "github.com/twmb/franz-go/pkg/sasl/plain"
	franzscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/aluminiapp/pipeline/lib/tlsfiles"
)

// Security is how the services reach a production Kafka: TLS so events
// (which carry IPs and user agents until the enricher drops them) are
// protected in transit, and SASL so only the pipeline can read them.
// The zero value is plaintext without authentication, the embedded
// broker's default.
type Security struct {
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
}

func (s *Security) registerFlags(fs *flag.FlagSet) {
	fs.BoolVar(&s.TLS, "kafka-tls", false, "connect to the brokers over TLS")
	fs.StringVar(&s.TLSCAFile, "kafka-tls-ca-file", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's)")
	fs.StringVar(&s.TLSCertFile, "kafka-tls-cert-file", "", "PEM client certificate, for brokers that require mutual TLS")
	fs.StringVar(&s.TLSKeyFile, "kafka-tls-key-file", "", "PEM key of -kafka-tls-cert-file")
	fs.StringVar(&s.TLSServerName, "kafka-tls-server-name", "", "name to verify in the brokers' certificates (default: the host dialled)")
	fs.StringVar(&s.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&s.SASLUsername, "kafka-sasl-username", "", "SASL user name")
	fs.StringVar(&s.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer the environment variable ALUMINI_KAFKA_SASL_PASSWORD)")
}

// build loads the certificates and the SASL mechanism. Validate reports
// its error, so a bad file stops the service at start; later calls (a
// writer or reader being made, a readiness check) read the files again,
// which also picks up renewed certificates.
func (s *Security) build() (*tls.Config, sasl.Mechanism, error) {
	var tc *tls.Config
	usesTLSFiles := s.TLSCAFile != "" || s.TLSCertFile != "" || s.TLSKeyFile != "" || s.TLSServerName != ""
	if usesTLSFiles && !s.TLS {
		return nil, nil, errors.New("kafka-tls-*: the TLS files and server name need -kafka-tls")
	}
	if s.TLS {
		var err error
		if tc, err = tlsfiles.Client("kafka-tls", s.TLSCAFile, s.TLSCertFile, s.TLSKeyFile, s.TLSServerName); err != nil {
			return nil, nil, err
		}
	}
	var m sasl.Mechanism
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" {
			return nil, nil, errors.New("kafka-sasl-username/password: set -kafka-sasl-mechanism too")
		}
		return tc, nil, nil
	case "PLAIN":
		m = plain.Mechanism{Username: s.SASLUsername, Password: s.SASLPassword}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if strings.HasSuffix(s.SASLMechanism, "512") {
			algo = scram.SHA512
		}
		var err error
		if m, err = scram.Mechanism(algo, s.SASLUsername, s.SASLPassword); err != nil {
			return nil, nil, fmt.Errorf("kafka-sasl: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("kafka-sasl-mechanism: %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	if s.SASLUsername == "" {
		return nil, nil, errors.New("kafka-sasl-username: needed with -kafka-sasl-mechanism")
	}
	return tc, m, nil
}

// Transport is a kafka-go transport for a writer or client, carrying the
// TLS and SASL settings; it pools its own connections.
func (c *Config) Transport() *kafka.Transport {
	tc, m, _ := c.Security.build() // Validate has reported the error.
	return &kafka.Transport{TLS: tc, SASL: m, DialTimeout: 5 * time.Second}
}

// Dialer is the kafka-go dialer for readers and single connections.
func (c *Config) Dialer(timeout time.Duration) *kafka.Dialer {
	tc, m, _ := c.Security.build()
	return &kafka.Dialer{Timeout: timeout, DualStack: true, TLS: tc, SASLMechanism: m}
}

// Ping opens a fresh connection to the brokers, one after the other until
// one answers an ApiVersions request. Readiness must not answer from a
// cached connection or metadata: that would stay green while Kafka is down.
func (c *Config) Ping(ctx context.Context) error {
	d := c.Dialer(2 * time.Second)
	var errs []error
	for _, b := range c.BrokerList() {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.ApiVersions()
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	return fmt.Errorf("no kafka broker answers: %w", errors.Join(errs...))
}

// FranzOpts are the connection options (brokers, TLS, SASL) for franz-go
// clients. The enricher's state topics need franz-go because kafka-go has
// no DeleteRecords, which destroying old salts relies on.
func (c *Config) FranzOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.BrokerList()...)}
	tc, _, _ := c.Security.build() // Validate has reported the error.
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	user, pass := c.Security.SASLUsername, c.Security.SASLPassword
	switch strings.ToUpper(c.Security.SASLMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(franzplain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(franzscram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(franzscram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	}
	return opts
}
