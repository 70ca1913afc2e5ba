package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// mutationsByTable counts the mutations of the test's database per table.
func mutationsByTable(t *testing.T, e *env) map[string]uint64 {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), "SELECT table, count() FROM system.mutations WHERE database = currentDatabase() GROUP BY table")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var table string
		var n uint64
		if err := rows.Scan(&table, &n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// TestErasuresAreBatched: 100 erasure requests, 2 of visitors with events
// and 98 of visitors without, start no mutation themselves; each run of
// the batch (one per -erasure-interval) adds at most one mutation per
// table; no mutation names a visitor without events; and the statuses go
// from pending to done.
func TestErasuresAreBatched(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ErasureBurst = 100 })
	auth := "Bearer " + shopKey
	for i := range 100 {
		visitor := 1000 + i
		if i < 2 {
			visitor = i + 1
		}
		code, _, body := request{method: http.MethodPost, target: fmt.Sprintf("%s?visitor_id=%d", ErasurePath, visitor), auth: auth}.do(t, e.h)
		want, state := http.StatusOK, `"state":"done"`
		if visitor < 1000 {
			want, state = http.StatusAccepted, `"state":"pending"`
		}
		if code != want || !strings.Contains(body, state) {
			t.Fatalf("POST erasure of visitor %d = %d %s; want %d %s", visitor, code, body, want, state)
		}
	}
	if m := mutationsByTable(t, e); len(m) != 0 {
		t.Fatalf("mutations after 100 erasure requests = %v; want none before the batch", m)
	}
	before := map[string]uint64{}
	for run := 1; ; run++ {
		left, err := e.h.cfg.Store.FinishErasures(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		after := mutationsByTable(t, e)
		for table, n := range after {
			if n-before[table] > 1 {
				t.Errorf("batch %d made %d mutations of %s; want at most 1", run, n-before[table], table)
			}
		}
		before = after
		if left == 0 {
			break
		}
		if run == 200 {
			t.Fatalf("%d erasures still pending after %d batches", left, run)
		}
	}
	if before["events"] != 1 {
		t.Errorf("events mutations = %d; want 1 for both visitors", before["events"])
	}
	var unknown uint64
	if err := e.conn.QueryRow(context.Background(),
		"SELECT count() FROM system.mutations WHERE database = currentDatabase() AND position(command, '1000') > 0").Scan(&unknown); err != nil || unknown != 0 {
		t.Errorf("mutations naming a visitor without events = %d, %v; want 0", unknown, err)
	}
	waitErasureDone(t, e, auth, "1")
	body := waitErasureDone(t, e, auth, "2")
	if !strings.Contains(body, `"state":"done"`) {
		t.Errorf("erasure status of visitor 2 = %s; want state done", body)
	}
	if _, _, body := (request{target: AggregatePath + "?" + march, auth: auth}).do(t, e.h); !strings.Contains(body, `"visitors":0,`) {
		t.Errorf("shop's aggregate after erasing both visitors = %s; want 0 visitors", body)
	}
}

// TestErasureRateLimited: a client's erasure requests beyond its burst get
// 429; another client's are not affected.
func TestErasureRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ErasureRate, c.ErasureBurst = 0.01, 3 })
	for i := range 3 {
		if code, _, body := (request{method: http.MethodPost, target: fmt.Sprintf("%s?visitor_id=%d", ErasurePath, 500+i), auth: "Bearer " + shopKey}).do(t, e.h); code != http.StatusOK {
			t.Fatalf("erasure %d = %d %s; want 200", i, code, body)
		}
	}
	code, h, body := request{method: http.MethodPost, target: ErasurePath + "?visitor_id=600", auth: "Bearer " + shopKey}.do(t, e.h)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "100" || !strings.Contains(body, "erasure rate limit") {
		t.Errorf("fourth erasure = %d Retry-After %q %s; want 429 Retry-After 100", code, h.Get("Retry-After"), body)
	}
	if code, _, body := (request{method: http.MethodPost, target: ErasurePath + "?visitor_id=600", auth: "Bearer " + blogKey}).do(t, e.h); code != http.StatusOK {
		t.Errorf("blog's erasure after shop was limited = %d %s; want 200", code, body)
	}
}
