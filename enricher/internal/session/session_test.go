package session

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

func open(t *testing.T, addr string) *Tracker {
	t.Helper()
	tr, err := Open(t.Context(), Config{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: "sessions", Timeout: 30 * time.Minute, MaxVisitors: 1000, TTL: 365 * 24 * time.Hour}, 2, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// step is one event of a visitor and what it must learn.
type step struct {
	name      string
	at        time.Duration // after the test's start time
	source    string
	newSess   bool // a session other than the previous step's
	newVis    bool
	prevVisit time.Duration // -1: none
}

func run(t *testing.T, tr *Tracker, key string, base time.Time, offset *int64, last *uint64, steps []step) {
	t.Helper()
	for _, s := range steps {
		if err := tr.Prepare(t.Context(), 0, *offset); err != nil {
			t.Fatal(err)
		}
		out := tr.Apply(0, *offset, key, fmt.Sprintf("e%d", *offset), base.Add(s.at).UnixMilli(), s.source)
		*offset++
		if got := out.SessionID != *last; got != s.newSess {
			t.Errorf("%s: new session = %v; want %v", s.name, got, s.newSess)
		}
		*last = out.SessionID
		if out.NewVisitor != s.newVis {
			t.Errorf("%s: new visitor = %v; want %v", s.name, out.NewVisitor, s.newVis)
		}
		want := int64(0)
		if s.prevVisit >= 0 {
			want = base.Add(s.prevVisit).UnixMilli()
		}
		if out.PreviousVisitMs != want {
			t.Errorf("%s: previous visit = %d; want %d", s.name, out.PreviousVisitMs, want)
		}
	}
}

func TestTimeoutSourceChangeAndRestart(t *testing.T) {
	_, addr := kafkatest.Start(t)
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Minute)
	var offset int64
	var last uint64
	tr := open(t, addr)
	run(t, tr, "shop:1", base, &offset, &last, []step{
		{"first event", 0, "Google", true, true, -1},
		{"29 minutes later", 29 * time.Minute, "", false, true, -1},
		{"internal click, 58 minutes after the start", 58 * time.Minute, "", false, true, -1},
		{"31 minutes of silence: timeout", 89 * time.Minute, "", true, false, 0},
		{"same source again", 90 * time.Minute, "", false, false, 0},
		{"arrives from a newsletter: source change", 95 * time.Minute, "utm:newsletter/nov", true, false, 89 * time.Minute},
		{"same campaign again", 96 * time.Minute, "utm:newsletter/nov", false, false, 89 * time.Minute},
	})
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Restart: a new instance rebuilds the state from the topic and goes
	// on with the same session.
	tr2 := open(t, addr)
	run(t, tr2, "shop:1", base, &offset, &last, []step{
		{"after a restart, 10 minutes later", 106 * time.Minute, "", false, false, 89 * time.Minute},
		{"after a restart, timeout", 200 * time.Minute, "", true, false, 95 * time.Minute},
	})
	if err := tr2.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	// The first instance gets the partition back after the second one
	// moved on: the offset gap makes it reload instead of trusting its
	// memory.
	run(t, tr, "shop:1", base, &offset, &last, []step{
		{"partition moved back", 210 * time.Minute, "", false, false, 95 * time.Minute},
	})

	// Another visitor is independent.
	var other uint64
	run(t, tr, "blog:1", base, &offset, &other, []step{{"other visitor", 210 * time.Minute, "", true, true, -1}})
	if other == last {
		t.Error("two visitors share a session id")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	_, addr := kafkatest.Start(t)
	tr, err := Open(t.Context(), Config{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: "sessions", Timeout: 30 * time.Minute, MaxVisitors: 100, TTL: time.Hour}, 1, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	now := time.Now().UnixMilli()
	for i := range 5000 {
		tr.Apply(0, int64(i), "v"+string(rune(i)), "e", now, "")
	}
	tr.state.CleanUp()
	if n := tr.state.EstimatedSize(); n > 100 {
		t.Errorf("%d visitors in memory; want at most 100", n)
	}
}

func TestStateRoundTrip(t *testing.T) {
	for _, s := range []State{
		{SessionID: 42, Start: 1, Last: 2, PreviousStart: 3, Source: "ref:Google"},
		{SessionID: 42, Start: 1, Last: 2, Source: "", Seen: []Seen{
			{Event: 7, Outcome: Outcome{SessionID: 42, NewVisitor: true}},
			{Event: 8, Outcome: Outcome{SessionID: 43, PreviousVisitMs: 1}},
		}},
	} {
		got, err := decode(encode(s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("decode(encode(%+v)) = %+v, %v", s, got, err)
		}
	}
	// A version 1 state (before events were remembered) still decodes.
	v1 := []byte{1, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 'G'}
	if got, err := decode(v1); err != nil || !reflect.DeepEqual(got, State{SessionID: 42, Start: 1, Last: 2, PreviousStart: 3, Source: "G"}) {
		t.Errorf("decode(version 1) = %+v, %v", got, err)
	}
	if _, err := decode([]byte{1, 2}); err == nil {
		t.Error("decode of 2 bytes succeeded; want an error")
	}
}

// TestSkipKeepsOffsetsContiguous: a hit that changes no state (a bot, a
// dead letter, a child-directed client's event) moves the partition's next
// offset on, so that the hit after it is not taken for a gap (which reloads
// the partition); a real gap still is one.
func TestSkipKeepsOffsetsContiguous(t *testing.T) {
	_, addr := kafkatest.Start(t)
	tr := open(t, addr)
	tr.Skip(0, 0) // not loaded yet: nothing to move
	if _, ok := tr.next[0]; ok {
		t.Fatal("Skip on a partition never loaded marked it loaded")
	}
	if err := tr.Prepare(t.Context(), 0, 0); err != nil {
		t.Fatal(err)
	}
	tr.Apply(0, 0, "shop:1", "e0", time.Now().UnixMilli(), "")
	tr.Skip(0, 1)
	if tr.next[0] != 2 {
		t.Errorf("after Apply(0) and Skip(1), next offset = %d; want 2", tr.next[0])
	}
	tr.Skip(0, 7) // offsets 2-6 went elsewhere: still a gap for Prepare
	if tr.next[0] != 2 {
		t.Errorf("Skip past a gap moved the next offset to %d; want 2 kept", tr.next[0])
	}
}

// TestReplayGivesTheFirstAnswer is the case: the batch [t0 direct,
// t0+1 min from Google] replayed after its state was saved (a failed
// commit), replayed by another instance that loads the saved state (a
// rebalance), or met again as a copy at a later offset, gets for each
// event the session, new-visitor flag and previous visit of the first
// processing. Without the events remembered, the replayed first event
// joined the Google session and became a returning visitor.
func TestReplayGivesTheFirstAnswer(t *testing.T) {
	_, addr := kafkatest.Start(t)
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	batch := []struct {
		id     string
		at     int64
		source string
	}{{"direct", t0, ""}, {"google", t0 + 60_000, "ref:Google"}, {"later", t0 + 120_000, ""}}
	apply := func(tr *Tracker, first int64) []Outcome {
		t.Helper()
		var outs []Outcome
		for i, e := range batch {
			off := first + int64(i)
			if err := tr.Prepare(t.Context(), 0, off); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, tr.Apply(0, off, "shop:1", e.id, e.at, e.source))
		}
		return outs
	}
	tr := open(t, addr)
	want := apply(tr, 0)
	if want[0].SessionID == want[1].SessionID || !want[0].NewVisitor || want[1].PreviousVisitMs != t0 {
		t.Fatalf("first processing = %+v; want a direct visit, then a Google visit whose previous visit is t0", want)
	}
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]Outcome{
		"replay after the state was saved": apply(tr, 0),
		"replay by another instance":       apply(open(t, addr), 0),
		"copies at later offsets":          apply(tr, 3),
	} {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v; want the first processing's %+v", name, got, want)
		}
	}
	// An event not seen before still moves the visit on.
	if out := tr.Apply(0, 6, "shop:1", "new", t0+180_000, ""); out.SessionID != want[2].SessionID {
		t.Errorf("a new event after the replays: session %x; want the current visit %x", out.SessionID, want[2].SessionID)
	}
}

// TestSeenIsBounded: a visitor's state remembers at most maxSeen events,
// the latest.
func TestSeenIsBounded(t *testing.T) {
	_, addr := kafkatest.Start(t)
	tr := open(t, addr)
	now := time.Now().UnixMilli()
	for i := range maxSeen + 10 {
		tr.Apply(0, int64(i), "shop:1", fmt.Sprint(i), now+int64(i), "")
	}
	s, _ := tr.state.GetIfPresent("shop:1")
	if len(s.Seen) != maxSeen || s.Seen[0].Event != xxhash.Sum64String("10") {
		t.Errorf("state remembers %d events starting with %x; want the latest %d", len(s.Seen), s.Seen[0].Event, maxSeen)
	}
}
