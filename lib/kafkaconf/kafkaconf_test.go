package kafkaconf

import (
	"context"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
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
