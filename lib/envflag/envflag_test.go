package envflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParsePrecedence(t *testing.T) {
	env := map[string]string{
		"ALUMINI_LISTEN_ADDR":       ":9000",
		"ALUMINI_BATCH_TIMEOUT":     "250ms",
		"ALUMINI_KAFKA_BROKERS":     "a:9092,b:9092",
		"UNRELATED_LISTEN_ADDR":     ":1",
		"ALUMINI_NOT_A_FLAG_AT_ALL": "x",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	listen := fs.String("listen-addr", ":8080", "")
	timeout := fs.Duration("batch-timeout", time.Second, "")
	brokers := fs.String("kafka-brokers", "localhost:9092", "")
	untouched := fs.Int("workers", 4, "")
	if err := Parse(fs, []string{"-kafka-brokers", "c:9092"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *listen != ":9000" {
		t.Errorf("listen-addr = %q; want the environment's %q", *listen, ":9000")
	}
	if *timeout != 250*time.Millisecond {
		t.Errorf("batch-timeout = %v; want 250ms", *timeout)
	}
	if *brokers != "c:9092" {
		t.Errorf("kafka-brokers = %q; want the flag's value to win over the environment", *brokers)
	}
	if *untouched != 4 {
		t.Errorf("workers = %d; want default 4", *untouched)
	}
}

func TestParseBadEnvironmentValueNamesVariable(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Duration("batch-timeout", time.Second, "")
	err := Parse(fs, nil, func(k string) (string, bool) {
		if k == "ALUMINI_BATCH_TIMEOUT" {
			return "soon", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "ALUMINI_BATCH_TIMEOUT") {
		t.Fatalf("Parse with a bad duration = %v; want an error naming ALUMINI_BATCH_TIMEOUT", err)
	}
}
