package session

import (
	"testing"
	"time"

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
		out := tr.Apply(0, *offset, key, base.Add(s.at).UnixMilli(), s.source)
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
		tr.Apply(0, int64(i), "v"+string(rune(i)), now, "")
	}
	tr.state.CleanUp()
	if n := tr.state.EstimatedSize(); n > 100 {
		t.Errorf("%d visitors in memory; want at most 100", n)
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := State{SessionID: 42, Start: 1, Last: 2, PreviousStart: 3, Source: "ref:Google"}
	got, err := decode(encode(s))
	if err != nil || got != s {
		t.Errorf("decode(encode(%+v)) = %+v, %v", s, got, err)
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
	tr.Apply(0, 0, "shop:1", time.Now().UnixMilli(), "")
	tr.Skip(0, 1)
	if tr.next[0] != 2 {
		t.Errorf("after Apply(0) and Skip(1), next offset = %d; want 2", tr.next[0])
	}
	tr.Skip(0, 7) // offsets 2-6 went elsewhere: still a gap for Prepare
	if tr.next[0] != 2 {
		t.Errorf("Skip past a gap moved the next offset to %d; want 2 kept", tr.next[0])
	}
}
