package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/eventually"
)

// waitCopiesDropped waits until the sinker has dropped want later copies.
func (s *stack) waitCopiesDropped(want float64) {
	s.t.Helper()
	var got float64
	if eventually.Within(15*time.Second, func() bool {
		got = s.metric("sinker", `alumini_sinker_dropped_total{reason="copy"}`)
		return got >= want
	}) {
		if got > want {
			s.t.Fatalf("sinker dropped %v copies; want %v", got, want)
		}
		return
	}
	s.t.Fatalf("sinker did not drop %v copies within 15s; log:\n%s", want, s.log("sinker"))
}

// rowsPerEvent is the rows of events, plain and under FINAL, of each event
// id of client.
func (s *stack) rowsPerEvent(client string) map[string][2]uint64 {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT event_id, plain, final FROM
  (SELECT event_id, count() AS plain FROM events WHERE client_id = ? GROUP BY event_id)
  ALL INNER JOIN (SELECT event_id, count() AS final FROM events FINAL WHERE client_id = ? GROUP BY event_id) USING event_id`, client, client)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]uint64{}
	for rows.Next() {
		var id string
		var plain, final uint64
		if err := rows.Scan(&id, &plain, &final); err != nil {
			s.t.Fatal(err)
		}
		out[id] = [2]uint64{plain, final}
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// TestRetriesAreCountedOnce is the first case, end to end through
// the built services: an accepted event sent again from another address
// (cookieless client), and again without its cookie (cookie client), is
// answered 202 each time, yet stored as one row with the first copy's
// visitor, and the reporter counts one page view and one visitor.
func TestRetriesAreCountedOnce(t *testing.T) {
	const key = "alm_e2e_test_key_0123456789abcdef"
	s := newStack(t, key)
	from := func(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }

	// Cookieless: the same event from two addresses.
	const pv = `{"client_id":"shop","url":"https://shop.example/","event_id":"retry-1"}`
	if status, body, _ := s.postWith(pv, from("198.51.100.1")); status != 202 {
		t.Fatalf("POST = %d %s; want 202", status, body)
	}
	s.waitForCounts(key, 1, 1, 1, 15*time.Second)
	if status, body, _ := s.postWith(pv, from("203.0.113.9")); status != 202 {
		t.Fatalf("retry from another address = %d %s; want 202", status, body)
	}
	s.waitCopiesDropped(1)
	s.waitForCounts(key, 1, 1, 1, 15*time.Second)

	// Cookie mode: the first page view's answer never reaches the browser
	// (say a 503 after its event reached Kafka), so the browser retries
	// without a cookie and keeps the cookie of the retry's answer. With
	// the collector's cookie secret the retry gets the first send's
	// visitor, and the next page view, with that cookie, is the same
	// visitor's.
	browser := map[string]string{"Origin": "https://cookies.example", "X-Forwarded-For": "198.51.100.7"}
	const first = `{"client_id":"cookies","url":"https://cookies.example/","event_id":"c-1"}`
	status, body, lost := s.postWith(first, browser)
	if status != 202 || len(lost) == 0 {
		t.Fatalf("POST = %d %s with cookies %v; want 202 setting the visitor cookie", status, body, lost)
	}
	s.waitForCounts(key+"-cookies", 1, 1, 1, 15*time.Second)
	status, body, kept := s.postWith(first, browser)
	if status != 202 || len(kept) == 0 {
		t.Fatalf("retry without the cookie = %d %s with cookies %v; want 202 setting the visitor cookie", status, body, kept)
	}
	if kept[0].Value != lost[0].Value {
		t.Errorf("retry without the cookie got cookie %s, the first send %s; want the same visitor", kept[0].Value, lost[0].Value)
	}
	s.waitCopiesDropped(2)
	withCookie := map[string]string{"Origin": "https://cookies.example", "Cookie": kept[0].Name + "=" + kept[0].Value}
	if status, body, _ := s.postWith(`{"client_id":"cookies","url":"https://cookies.example/next","event_id":"c-2"}`, withCookie); status != 202 {
		t.Fatalf("next page view = %d %s; want 202", status, body)
	}
	s.waitForCounts(key+"-cookies", 2, 1, 2, 15*time.Second)

	for client, ids := range map[string][]string{"shop": {"retry-1"}, "cookies": {"c-1", "c-2"}} {
		got := s.rowsPerEvent(client)
		if len(got) != len(ids) {
			t.Errorf("%s: event ids stored %v; want %v", client, got, ids)
		}
		for _, id := range ids {
			if got[id] != [2]uint64{1, 1} {
				t.Errorf("%s: rows of %s (plain, FINAL) = %v; want one of each", client, id, got[id])
			}
		}
	}
	var visitors uint64
	if err := s.db.QueryRow(context.Background(), "SELECT uniqExact(visitor_id) FROM events WHERE client_id = 'cookies'").Scan(&visitors); err != nil {
		t.Fatal(err)
	}
	if visitors != 1 {
		t.Errorf("cookies: %d visitor ids stored; want 1", visitors)
	}
}
