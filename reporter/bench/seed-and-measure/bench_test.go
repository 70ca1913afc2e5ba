package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

func TestInline(t *testing.T) {
	got, err := inline("SELECT '?', `a?`, ? FROM t WHERE x = ? AND y IN (?, ?) AND z = '\\'?'", []any{"it's a \\ test", int64(-5), uint64(7), 3})
	if err != nil {
		t.Fatal(err)
	}
	want := "SELECT '?', `a?`, 'it\\'s a \\\\ test' FROM t WHERE x = -5 AND y IN (7, 3) AND z = '\\'?'"
	if got != want {
		t.Errorf("inline =\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []struct {
		sql  string
		args []any
	}{
		{"SELECT ?", nil},
		{"SELECT 1", []any{1}},
		{"SELECT ?", []any{1.5}},
		{"SELECT 'open", nil},
	} {
		if _, err := inline(bad.sql, bad.args); err == nil {
			t.Errorf("inline(%q, %v) succeeded; want an error", bad.sql, bad.args)
		}
	}
}

func TestQuotas(t *testing.T) {
	q := quotas(10_000_000, 50, 0.3)
	sum := 0
	for i, n := range q {
		sum += n
		if i > 0 && n >= q[0] {
			t.Errorf("client %d has %d events, not fewer than the largest (%d)", i, n, q[0])
		}
		if n <= 0 {
			t.Errorf("client %d has no events", i)
		}
	}
	if sum != 10_000_000 || q[0] != 3_000_000 {
		t.Errorf("quotas sum to %d with the largest %d; want 10000000 and 3000000", sum, q[0])
	}
}

// TestSmallRun runs the whole benchmark on a few thousand events: seeding,
// the API-vs-clickhouse-client agreement check of every report (sampled),
// the timing table, and dropping the database.
func TestSmallRun(t *testing.T) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	cfg := config{
		Addr: chtest.Addr(), ClientBinary: "clickhouse-client", Database: "bench_smoke_" + hex.EncodeToString(b),
		Events: 4000, Clients: 3, LargestShare: 0.5, Days: 7, Warmup: 0, Reps: 1, Seed: 1,
		// c00's 2,000 events: every report not answered from rolled-up
		// sessions reads one in 5 visitors, and each run checks the API's
		// scaled counts against the sampled SQL's.
		SampleAbove: 500, RollUp: true, SampleRolledAbove: query.DefaultSampleRolledAbove,
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	report := out.String()
	// A zero Store never samples, so it needs no connection.
	cases, _, err := buildCases(ctx, &query.Store{}, query.Range{From: time.Unix(0, 0), To: time.Unix(86400, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !strings.Contains(report, "| "+c.name+" | ") {
			t.Errorf("report has no row for %s:\n%s", c.name, report)
		}
	}
	for _, want := range []string{"Seeded 4000 events of 3 clients", "Client c00: 2000 events", "Rolled up the sessions", "a sample of one in 5 visitors",
		"| aggregate | exact, rolled up |", "| breakdown entry_page | exact, rolled up |", "| breakdown page | 1 in 5 |",
		"Largest overhead (p50)", "Accuracy of one in 5 against exact counts"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	admin, err := (&chconf.Config{Addr: cfg.Addr, Database: "default"}).Open()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var left uint64
	if err := admin.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", cfg.Database).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("database %s left behind", cfg.Database)
	}
}
