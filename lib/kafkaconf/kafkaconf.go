// Package kafkaconf holds the Kafka settings the services share (brokers,
// topic names and layout) and creates the topics a fresh broker lacks.
package kafkaconf

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
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

// GroupMember is how a service instance names itself to a consumer group.
type GroupMember struct {
	// InstanceID names this instance across restarts: the host name by
	// default, which a restarted container or pod keeps.
	InstanceID string
}

// RegisterFlags adds the consumer-group flags.
func (g *GroupMember) RegisterFlags(fs *flag.FlagSet) {
	host, _ := os.Hostname() // empty on failure: Validate asks for the flag
	fs.StringVar(&g.InstanceID, "kafka-instance-id", host, "name of this instance in its consumer group, the same across restarts (default: the host name); a restarted instance removes the members its crashed predecessor left, so its partitions move at once instead of after the session timeout. Must differ between instances")
}

// Validate reports a missing instance id.
func (g *GroupMember) Validate() error {
	if g.InstanceID == "" {
		return errors.New("kafka-instance-id: no host name to default to; set it")
	}
	return nil
}

// ClientID is the Kafka client id of service's consumer-group connections:
// it carries the instance id, which EvictPredecessors looks for.
func (g *GroupMember) ClientID(service string) string {
	return "alumini-" + service + "/" + g.InstanceID
}

// EvictPredecessors removes from group the members whose client id is
// clientID: those an earlier run of this instance left when it crashed.
// Without it, a crashed member keeps its partitions until its session
// times out, and a restarted instance that joins meanwhile triggers a
// rebalance that waits for it; crash-looping instances chained such waits
// into minutes of unread partitions (issue 17: 110 s). kafka-go has no
// static membership (group.instance.id), which solves this in the Java
// client; this is its part that matters here. Call it before joining.
func (c *Config) EvictPredecessors(ctx context.Context, group, clientID string) (int, error) {
	tr := c.Transport()
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: c.Addr(), Timeout: 10 * time.Second, Transport: tr}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return 0, fmt.Errorf("describing group %s: %w", group, err)
	}
	var leave []kafka.LeaveGroupRequestMember
	for _, g := range resp.Groups {
		if g.Error != nil {
			return 0, fmt.Errorf("describing group %s: %w", group, g.Error)
		}
		for _, m := range g.Members {
			if m.ClientID == clientID {
				leave = append(leave, kafka.LeaveGroupRequestMember{ID: m.MemberID})
			}
		}
	}
	if len(leave) == 0 {
		return 0, nil
	}
	lr, err := client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: group, Members: leave})
	if err == nil {
		err = lr.Error
	}
	if err != nil {
		return 0, fmt.Errorf("removing %d members left by an earlier run from group %s: %w", len(leave), group, err)
	}
	return len(leave), nil
}
