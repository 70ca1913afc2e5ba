package kafkaconf

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/outage"
)

func TestEnsureTopicsCreatesMissingAndKeepsExisting(t *testing.T) {
	cluster, addr := kafkatest.Start(t)
	cfg := Config{Brokers: " " + addr + " ,", RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead", Partitions: 4, ReplicationFactor: 1}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cfg.EnsureTopics(ctx, "raw"); err != nil {
		t.Fatal(err)
	}
	cfg.Partitions = 8 // a second start with another layout leaves the topic alone
	if err := cfg.EnsureTopics(ctx, "raw", "enriched"); err != nil {
		t.Fatalf("EnsureTopics over an existing topic = %v; want nil", err)
	}
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for topic, want := range map[string]int{"raw": 4, "enriched": 8} {
		parts, err := conn.ReadPartitions(topic)
		if err != nil || len(parts) != want {
			t.Errorf("topic %s has %d partitions (%v); want %d", topic, len(parts), err, want)
		}
	}
	if err := cfg.Ping(ctx); err != nil {
		t.Errorf("Ping = %v; want nil", err)
	}
	// Readiness must see a broker that went away, not a cached answer.
	cluster.Close()
	if err := cfg.Ping(ctx); err == nil {
		t.Error("Ping after the broker stopped = nil; want an error")
	}
}

func TestValidate(t *testing.T) {
	base := Config{Brokers: "a:9092", RawTopic: "r", EnrichedTopic: "e", DeadLetterTopic: "d", Partitions: 1, ReplicationFactor: 1}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Brokers = " , " }, "at least one broker"},
		{func(c *Config) { c.Brokers = "a:9092,b" }, `"b"`},
		{func(c *Config) { c.EnrichedTopic = "" }, "kafka-enriched-topic"},
		{func(c *Config) { c.Partitions = 0 }, "kafka-partitions"},
	} {
		c := base
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v; want an error mentioning %s", c, err, tc.want)
		}
	}
}

// TestEvictPredecessorsRemovesOnlyItsOwnMembers joins a group with two
// members, one with this instance's client id: EvictPredecessors removes
// that one and leaves the other.
func TestEvictPredecessorsRemovesOnlyItsOwnMembers(t *testing.T) {
	_, addr := kafkatest.Start(t)
	cfg := Config{Brokers: addr, Partitions: 2, ReplicationFactor: 1}
	if err := cfg.EnsureTopics(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	member := GroupMember{InstanceID: "host-a"}
	join := func(clientID string) *kafka.ConsumerGroup {
		t.Helper()
		g, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
			ID: "g", Brokers: []string{addr}, Topics: []string{"t"},
			Dialer:         &kafka.Dialer{ClientID: clientID, Timeout: 5 * time.Second},
			SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond, RebalanceTimeout: 6 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		go func() {
			for {
				if _, err := g.Next(context.Background()); errors.Is(err, kafka.ErrGroupClosed) {
					return
				}
			}
		}()
		return g
	}
	join(member.ClientID("sinker"))
	other := GroupMember{InstanceID: "host-b"}
	join(other.ClientID("sinker"))
	members := func() []string {
		client := &kafka.Client{Addr: kafka.TCP(addr)}
		resp, err := client.DescribeGroups(t.Context(), &kafka.DescribeGroupsRequest{GroupIDs: []string{"g"}})
		if err != nil || len(resp.Groups) != 1 {
			return nil
		}
		var ids []string
		for _, m := range resp.Groups[0].Members {
			ids = append(ids, m.ClientID)
		}
		slices.Sort(ids)
		return ids
	}
	if !eventually.Within(20*time.Second, func() bool { return len(members()) == 2 }) {
		t.Fatalf("group members %v; want two", members())
	}
	n, err := cfg.EvictPredecessors(t.Context(), "g", member.ClientID("sinker"))
	if err != nil || n != 1 {
		t.Fatalf("EvictPredecessors = %d, %v; want 1 member removed", n, err)
	}
	if got := members(); !slices.Contains(got, "alumini-sinker/host-b") {
		t.Errorf("members after eviction: %v; want alumini-sinker/host-b kept", got)
	}
	if n, err := cfg.EvictPredecessors(t.Context(), "nobody", member.ClientID("sinker")); err != nil || n != 0 {
		t.Errorf("EvictPredecessors of an unknown group = %d, %v; want 0, nil", n, err)
	}
}

// TestEnsureTopicsTellsConfigurationFromOutage: a topic name Kafka refuses
// cannot be fixed by waiting; too few brokers for the replication factor
// is what a cluster answers while its brokers start, and is retried.
func TestEnsureTopicsTellsConfigurationFromOutage(t *testing.T) {
	cluster, addr := kafkatest.Start(t)
	cfg := Config{Brokers: addr, Partitions: 1, ReplicationFactor: 1}
	cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.CreateTopics}, Err: kerr.PolicyViolation})
	err := cfg.EnsureTopics(t.Context(), "refused")
	if err == nil || !outage.IsPermanent(err) {
		t.Errorf("EnsureTopics refused by a policy = %v; want a permanent error", err)
	}
	cfg.ReplicationFactor = 3
	err = cfg.EnsureTopics(t.Context(), "needs-three")
	if err == nil || outage.IsPermanent(err) {
		t.Errorf("EnsureTopics with replication 3 on one broker = %v; want an error worth retrying", err)
	}
}
