package chschema

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// BenchmarkViewInsertCost measures what the report views cost ClickHouse's
// own insert: clickhouse-client inserting the same 300,000 rows in Native
// format into a fresh database's events table with no views, with
// migration 2's String-id views, and with migration 4's event_key views
// (ALUMINI_VIEW_TIMING=each: with one view at a time instead), in rotating
// order so the machine's drift spreads over all of them. It logs rows/s
// and the view tables' size on disk; only ratios within one run mean
// anything on a shared machine. One pass takes minutes, whatever b.N is:
//
//	go test -run '^$' -bench ViewInsertCost -benchtime 1x ./schema/
func BenchmarkViewInsertCost(t *testing.B) {
	mode := os.Getenv("ALUMINI_VIEW_TIMING")
	if _, err := osexec.LookPath("clickhouse-client"); err != nil {
		t.Skip("needs clickhouse-client")
	}
	ctx := context.Background()
	const rows, rounds = 300_000, 3
	srcDB, src := chtest.Database(t)
	if err := Apply(ctx, src, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	for from := 0; from < rows; from += 100_000 {
		evs := make([]*aluminiv1.Event, 0, 100_000)
		for i := from; i < from+100_000; i++ {
			evs = append(evs, timingEvent(i))
		}
		insert(t, src, evs)
	}
	host, port, err := net.SplitHostPort(chtest.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cols := strings.Join(Columns, ", ")
	native := clickhouseClient(t, host, port, srcDB, "SELECT "+cols+" FROM events FORMAT Native", nil)

	// A setup is the schema of one measured database: the migrations by
	// version, then, for one view alone, that view's statements.
	type setup struct {
		name     string
		versions []uint32
		view     func(Target) []string
	}
	setups := []setup{{"no views", []uint32{1, 3}, nil}}
	if mode == "each" {
		for _, g := range []generation{stringIDs, keyIDs} {
			for i, v := range viewsOf(Target{Version: Oldest}, g) {
				one := func(t Target) []string { return createViews(t, g)[3*i : 3*i+2] } // table and view, no backfill
				setups = append(setups, setup{v.name + " (" + g.idType + ")", []uint32{1, 3}, one})
			}
		}
	} else {
		setups = append(setups, setup{"String-id views (migration 2)", []uint32{1, 2, 3}, nil}, setup{"event_key views (migration 4)", []uint32{1, 2, 3, 4}, nil})
	}
	took := map[string][]time.Duration{}
	viewBytes := map[string]uint64{}
	for r := 0; r < rounds; r++ {
		for j := range setups {
			s := setups[(j+r)%len(setups)]
			db, conn := chtest.Database(t)
			all := Migrations
			Migrations = slices.DeleteFunc(slices.Clone(all), func(m Migration) bool { return !slices.Contains(s.versions, m.Version) })
			err := Apply(ctx, conn, zap.NewNop())
			Migrations = all
			if err != nil {
				t.Fatal(err)
			}
			if s.view != nil {
				for _, stmt := range s.view(Target{Version: Oldest}) {
					if err := conn.Exec(ctx, stmt); err != nil {
						t.Fatal(err)
					}
				}
			}
			start := time.Now()
			clickhouseClient(t, host, port, db, "INSERT INTO events ("+cols+") FORMAT Native", native)
			took[s.name] = append(took[s.name], time.Since(start))
			var size uint64
			if err := conn.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() AND active AND table != 'events'").Scan(&size); err != nil {
				t.Fatal(err)
			}
			viewBytes[s.name] = size
			if err := conn.Exec(ctx, "DROP DATABASE "+db); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := 0.0
	for i, s := range setups {
		var sum time.Duration
		var each []string
		for _, d := range took[s.name] {
			sum += d
			each = append(each, fmt.Sprintf("%.0f", rows/d.Seconds()))
		}
		rate := float64(rows*len(took[s.name])) / sum.Seconds()
		if i == 0 {
			base = rate
		}
		t.Logf("%-32s %8.0f rows/s  %.2fx of no views  (runs: %s), view tables %.1f MiB", s.name, rate, rate/base, strings.Join(each, ", "), float64(viewBytes[s.name])/(1<<20))
	}
}

func clickhouseClient(t testing.TB, host, port, db, query string, in []byte) []byte {
	t.Helper()
	cmd := osexec.Command("clickhouse-client", "--host", host, "--port", port, "--database", db, "--query", query)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("clickhouse-client %q: %v: %s", query, err, stderr.String())
	}
	return out.Bytes()
}

// timingEvent has the shape of sinker/bench's events: 20 clients, 50,000
// visitors, four events per session, five paths, one in ten a custom event.
func timingEvent(i int) *aluminiv1.Event {
	ts := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 2 * time.Second)
	paths := []string{"/", "/pricing", "/blog/why-clickhouse", "/docs/getting-started", "/signup"}
	ev := &aluminiv1.Event{
		ClientId: fmt.Sprintf("client-%d", i%20), EventId: fmt.Sprintf("0193a8c4-%08x-7000-8000-%012x", i, i*7919),
		Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli() + 40,
		Url: "https://shop.example" + paths[i%5] + "?utm_source=news", Hostname: "shop.example", Path: paths[i%5],
		Browser: []string{"Firefox", "Chrome", "Safari", "Edge"}[i%4], ReferrerSource: "Google", ReferrerMedium: "search",
		UtmSource: "news", UtmMedium: "email", UtmCampaign: "winter", Country: "DE",
		VisitorId: uint64(i%50_000) * 2654435761, SessionId: uint64(i/4) * 40503, IsNewVisitor: i%9 == 0,
	}
	if i%10 == 0 {
		ev.Type, ev.Name = aluminiv1.EventType_EVENT_TYPE_CUSTOM, "signup"
		ev.Properties = map[string]string{"plan": "pro"}
	}
	return ev
}
