// Package kafkaconf holds the Kafka settings the services share (brokers,
// topic names and layout) and creates the topics a fresh broker lacks.
package kafkaconf

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/aluminiapp/pipeline/lib/outage"
)

// Config is where the pipeline's topics live and how they are laid out.
type Config struct {
	Brokers           string
	RawTopic          string
	EnrichedTopic     string
	DeadLetterTopic   string
	Partitions        int
	ReplicationFactor int
	Security          Security
}

// RegisterFlags adds the Kafka flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Brokers, "kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers")
	fs.StringVar(&c.RawTopic, "kafka-raw-topic", "alumini.raw", "topic of raw hits from the collector")
	fs.StringVar(&c.EnrichedTopic, "kafka-enriched-topic", "alumini.enriched", "topic of enriched events from the enricher")
	fs.StringVar(&c.DeadLetterTopic, "kafka-dead-letter-topic", "alumini.dead-letter", "topic of records a stage could not process")
	// Partitions bound how many enricher and sinker instances can share the
	// work; more than needed costs little, and adding them later re-keys visitors.
	fs.IntVar(&c.Partitions, "kafka-partitions", 6, "partitions of each topic created at start when it is missing")
	fs.IntVar(&c.ReplicationFactor, "kafka-replication-factor", 1, "replication factor of topics created at start (3 in production)")
	c.Security.registerFlags(fs)
}

// Validate reports the first bad Kafka setting.
func (c *Config) Validate() error {
	if len(c.BrokerList()) == 0 {
		return errors.New("kafka-brokers: at least one broker is needed")
	}
	for _, b := range c.BrokerList() {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka-brokers: %q: %w", b, err)
		}
	}
	for name, t := range map[string]string{"kafka-raw-topic": c.RawTopic, "kafka-enriched-topic": c.EnrichedTopic, "kafka-dead-letter-topic": c.DeadLetterTopic} {
		if t == "" || len(t) > 249 {
			return fmt.Errorf("%s: a topic name of 1-249 characters is needed", name)
		}
	}
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		return errors.New("kafka-partitions and kafka-replication-factor must be at least 1")
	}
	if _, _, err := c.Security.build(); err != nil {
		return err
	}
	return nil
}

// BrokerList is Brokers split on commas.
func (c *Config) BrokerList() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Addr is the broker address list for kafka-go clients.
func (c *Config) Addr() net.Addr { return kafka.TCP(c.BrokerList()...) }

// EnsureTopics creates the named topics where they are missing. A topic
// that exists is left as it is, whatever its layout. Errors that retrying
// cannot fix are marked outage.Permanent; callers retry the others
// (outage.Dependency.Retry): a broker that is not up yet is no reason to
// stop.
func (c *Config) EnsureTopics(ctx context.Context, topics ...string) error {
	tr := c.Transport()
	// Each try has its own pool: a retried start must not leave one behind.
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: c.Addr(), Timeout: 10 * time.Second, Transport: tr}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", topics, err)
	}
	for topic, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			err := fmt.Errorf("creating topic %s: %w", topic, terr)
			if isConfigError(terr) {
				return outage.Permanent(err)
			}
			return err
		}
	}
	return nil
}

// isConfigError tells the answers that no wait can fix (a bad topic name
// or layout, a policy, missing rights) from those of a cluster that is
// starting or moving. Too few brokers for the replication factor is
// retried: it is what a cluster answers while its brokers start one by one.
func isConfigError(err error) bool {
	for _, e := range []kafka.Error{kafka.InvalidTopic, kafka.InvalidPartitionNumber, kafka.InvalidConfiguration,
		kafka.PolicyViolation, kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed, kafka.SASLAuthenticationFailed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// GroupTimings are the consumer-group settings that follow from the
// session timeout (how long a crashed member's partitions wait):
//   - heartbeat every tenth of it: live members learn of a rebalance
//     within a heartbeat, so a crash costs the session timeout plus about
//     one heartbeat, and ten heartbeats must be lost before a live member
//     is taken for dead;
//   - rebalance timeout equal to it: live members rejoin within a
//     heartbeat, and waiting longer for the others only delays the
//     partitions of all;
//   - one second before joining again after a failed join (kafka-go's
//     default of 5s left partitions unread for that long after each
//     failure while members came and went).
//
// The enricher and the sinker both use them.
func GroupTimings(session time.Duration) (heartbeat, rebalance, joinBackoff time.Duration) {
	return max(session/10, 100*time.Millisecond), session, time.Second
}
