package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
)

// TestChildDirectedClientStoresCountsOnly sends the same browser traffic
// for a normal client (cookie mode, truncated IPs kept) and a
// child-directed one through the collector, enricher and sinker binaries
// into ClickHouse, then compares the stored rows column by column: what
// the child-directed client does not store, and that its dashboard still
// has page views, sources and devices.
func TestChildDirectedClientStoresCountsOnly(t *testing.T) {
	const shopKey, kidsKey = "alm_e2e_shop_key_0123456789abcdef", "alm_e2e_kids_key_0123456789abcdef"
	clients := fmt.Sprintf(`clients:
  - id: shop
    domains: [shop.example]
    api_key_hashes: [%q]
    cookie_mode: cookie
    keep_truncated_ip: true
  - id: kids
    domains: [shop.example]
    api_key_hashes: [%q]
    child_directed: true
    allowed_properties: [level]
`, registry.HashAPIKey(shopKey), registry.HashAPIKey(kidsKey))
	// The demo database of make run: loopback, where the traffic comes
	// from, is Berlin.
	geoDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", geoDir+"/", "../enricher/cmd/demo-geodb").CombinedOutput(); err != nil {
		t.Fatalf("go build demo-geodb: %v\n%s", err, out)
	}
	geoDB := filepath.Join(geoDir, "city.mmdb")
	if out, err := exec.Command(filepath.Join(geoDir, "demo-geodb"), "-o", geoDB).CombinedOutput(); err != nil {
		t.Fatalf("demo-geodb: %v\n%s", err, out)
	}
	s, conn := newStackWith(t, clients, "ALUMINI_GEO_DB="+geoDB)

	// One browser, three visits an hour apart (the visitor's clock, sent
	// as timestamp), each event sent for both clients.
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	cookies := map[string]string{}
	for i := range 3 {
		for _, client := range []string{"shop", "kids"} {
			body := fmt.Sprintf(`{"client_id":%q,"event_id":"%s-%d","url":"https://shop.example/games/%d?utm_campaign=spring",`+
				`"referrer":"https://www.google.com/","title":"Game %d","language":"de-DE","screen_width":1280,"screen_height":800,`+
				`"timezone":"Europe/Berlin","user_id":"child-42","timestamp":%q,"properties":{"level":"%d","nickname":"Ann"}}`,
				client, client, i, i, i, base.Add(time.Duration(i)*time.Hour).Format(time.RFC3339), i)
			status, setCookie := s.postBrowser(body, cookies[client])
			if status != 202 {
				t.Fatalf("POST %s = %d; want 202", body, status)
			}
			if client == "kids" && setCookie != "" {
				t.Errorf("child-directed client got a cookie: %s", setCookie)
			}
			if client == "shop" && i == 0 {
				if setCookie == "" {
					t.Fatal("cookie-mode client got no visitor cookie")
				}
				cookies["shop"] = strings.Split(setCookie, ";")[0]
				cookies["kids"] = cookies["shop"] // the same browser sends it to every site of the collector
			}
		}
	}

	rows := waitForRows(t, conn, 6)
	shop, kids := rows["shop"], rows["kids"]
	if len(shop) != 3 || len(kids) != 3 {
		t.Fatalf("stored %d shop and %d kids events; want 3 each", len(shop), len(kids))
	}

	// Column by column. Each column is either stored alike for both
	// clients, or what the child-directed client stores instead is checked.
	zeroTime := func(v any) bool { return v.(time.Time).Unix() == 0 }
	distinct := func(col string, rs []map[string]any) bool {
		seen := map[any]bool{}
		for _, r := range rs {
			seen[r[col]] = true
		}
		return len(seen) == len(rs)
	}
	differs := map[string]func(i int, shop, kids map[string]any) string{
		"client_id": func(int, map[string]any, map[string]any) string { return "" },
		"event_id":  func(int, map[string]any, map[string]any) string { return "" },
		// received_at is the collector's clock: the two sends may fall in
		// different seconds.
		"received_at": func(int, map[string]any, map[string]any) string { return "" },
		"visitor_id": func(i int, sr, kr map[string]any) string {
			if sr["visitor_id"] != shop[0]["visitor_id"] {
				return "the normal client's visitor changed between events"
			}
			if kr["visitor_id"] == sr["visitor_id"] || !distinct("visitor_id", kids) {
				return "want a visitor id of the event's own, different for every event"
			}
			return ""
		},
		"session_id": func(i int, sr, kr map[string]any) string {
			if !distinct("session_id", shop) {
				return "the normal client's three visits an hour apart share a session"
			}
			if kr["session_id"] != kr["visitor_id"] {
				return "want the event's own id as its visit"
			}
			return ""
		},
		"is_new_visitor": func(i int, sr, kr map[string]any) string {
			if want := uint8(0); i == 0 {
				want = 1
				if sr["is_new_visitor"] != want {
					return "the normal client's first visit is not new"
				}
			} else if sr["is_new_visitor"] != want {
				return "the normal client's returning visitor is new"
			}
			if kr["is_new_visitor"] != uint8(1) {
				return "want every event a new visitor of its own"
			}
			return ""
		},
		"previous_visit": func(i int, sr, kr map[string]any) string {
			if i > 0 && zeroTime(sr["previous_visit"]) {
				return "the normal client's returning visitor has no previous visit"
			}
			if !zeroTime(kr["previous_visit"]) {
				return "want no previous visit"
			}
			return ""
		},
		"region":       wantEmpty("region", "DE-BE"),
		"city":         wantEmpty("city", "Berlin"),
		"user_id":      wantEmpty("user_id", "child-42"),
		"ip_truncated": wantEmpty("ip_truncated", "127.0.0.0/24"),
		"prop_keys": func(i int, sr, kr map[string]any) string {
			if !reflect.DeepEqual(sr["prop_keys"], []string{"level", "nickname"}) || !reflect.DeepEqual(kr["prop_keys"], []string{"level"}) {
				return "want both properties for the normal client, only the allow-listed level for the child-directed one"
			}
			return ""
		},
		"prop_values": func(i int, sr, kr map[string]any) string {
			if !reflect.DeepEqual(kr["prop_values"], []string{fmt.Sprint(i)}) {
				return "want only the allow-listed level's value"
			}
			return ""
		},
	}
	instead := map[string]string{
		"client_id": "(the client)", "event_id": "(the event)", "received_at": "(the collector's clock)",
		"visitor_id": "NOT STORED: the event's own id", "session_id": "NOT STORED: the event's own id",
		"is_new_visitor": "NOT STORED: always 1", "previous_visit": "NOT STORED: always none",
		"region": "NOT STORED", "city": "NOT STORED", "user_id": "NOT STORED", "ip_truncated": "NOT STORED",
		"prop_keys": "allow-listed only", "prop_values": "allow-listed only",
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-16s %-34s %-34s %s\n", "column", "normal (shop, event 1)", "child-directed (kids, event 1)", "")
	for _, col := range columns(shop[0]) {
		check, expectDiff := differs[col]
		same := true
		for i := range 3 {
			if !reflect.DeepEqual(shop[i][col], kids[i][col]) {
				same = false
			}
			if expectDiff {
				if msg := check(i, shop[i], kids[i]); msg != "" {
					t.Errorf("%s, event %d: shop %v, kids %v: %s", col, i, shop[i][col], kids[i][col], msg)
				}
			}
		}
		mark := "same"
		if !same {
			mark = instead[col]
		}
		if !expectDiff && !same {
			t.Errorf("%s differs (shop %v, kids %v); want it stored alike: it identifies no one", col, shop[0][col], kids[0][col])
		}
		fmt.Fprintf(&table, "%-16s %-34.34s %-34.34s %s\n", col, fmt.Sprint(shop[1][col]), fmt.Sprint(kids[1][col]), mark)
	}
	t.Logf("what each client stored (second event):\n%s", table.String())
	for _, col := range []string{"country", "browser", "os", "device_type", "referrer_source", "utm_campaign", "path"} {
		if fmt.Sprint(kids[0][col]) == "" {
			t.Errorf("the child-directed client's %s is empty; counts need it", col)
		}
	}
	if kids[0]["country"] != "DE" {
		t.Errorf("child-directed country = %v; want DE", kids[0]["country"])
	}

	// The dashboard's numbers: page views, sources and devices; each
	// event counts as a visitor of its own.
	s.waitForCounts(kidsKey, 3, 3, 3, 15*time.Second)
	for dim, want := range map[string]string{"source": "Google", "device": "desktop", "browser": "Firefox", "country": "DE"} {
		if body := s.breakdown(kidsKey, dim); !strings.Contains(body, fmt.Sprintf(`"value":%q`, want)) {
			t.Errorf("kids breakdown by %s = %s; want %s in it", dim, body, want)
		}
	}
}

// wantEmpty checks a column the normal client stores as want and the
// child-directed one leaves empty.
func wantEmpty(col, want string) func(int, map[string]any, map[string]any) string {
	return func(_ int, sr, kr map[string]any) string {
		if sr[col] != want {
			return fmt.Sprintf("want %q for the normal client", want)
		}
		if kr[col] != "" {
			return "want it empty"
		}
		return ""
	}
}

func columns(row map[string]any) []string {
	var out []string
	for c := range row {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// waitForRows polls the events table until it holds want rows (under
// FINAL) and returns them by client, ordered by event id.
func waitForRows(t *testing.T, conn driver.Conn, want int) map[string][]map[string]any {
	t.Helper()
	var out map[string][]map[string]any
	eventually.Within(20*time.Second, func() bool {
		var n int
		out, n = readRows(t, conn)
		return n >= want
	})
	return out
}

func readRows(t *testing.T, conn driver.Conn) (map[string][]map[string]any, int) {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT * FROM events FINAL ORDER BY client_id, event_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]map[string]any{}
	n := 0
	types := rows.ColumnTypes()
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{}
		for i, ct := range types {
			row[ct.Name()] = reflect.ValueOf(dest[i]).Elem().Interface()
		}
		client := row["client_id"].(string)
		out[client] = append(out[client], row)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, n
}

// postBrowser sends an event as a Firefox page on shop.example would, with
// a cookie when given, and returns the status and the visitor cookie set.
func (s *stack) postBrowser(body, cookie string) (int, string) {
	s.t.Helper()
	headers := map[string]string{"Origin": "https://shop.example"}
	if cookie != "" {
		headers["Cookie"] = cookie
	}
	status, _, cookies := s.postWith(body, headers)
	for _, c := range cookies {
		if c.Name == "alumini_vid" {
			return status, c.Name + "=" + c.Value
		}
	}
	return status, ""
}

// breakdown is the reporter's breakdown of the last 7 days by a dimension, as text.
func (s *stack) breakdown(key, dimension string) string {
	s.t.Helper()
	status, b := s.get(key, "/api/v1/stats/breakdown?period=7d&dimension="+dimension)
	var v any
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil {
		s.t.Errorf("breakdown by %s = %d %s", dimension, status, b)
	}
	return string(b)
}
