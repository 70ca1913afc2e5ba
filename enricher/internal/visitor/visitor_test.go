package visitor

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/enricher/internal/kafkastate"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

// clock is a settable time source shared by the stores of one test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func openStore(t *testing.T, addr string, c *clock) *SaltStore {
	t.Helper()
	s, err := OpenSaltStore(t.Context(), SaltConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: "salts", Grace: time.Hour, Now: c.now}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

const secret = "0123456789abcdef0123456789abcdef"

// TestCrossClientVisitorIDs: the same IP and user agent on two clients'
// sites gives unrelated ids; on one client the id is stable within the day
// and changes with the day.
func TestCrossClientVisitorIDs(t *testing.T) {
	_, addr := kafkatest.Start(t)
	day := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	c := &clock{t: day}
	h := New([]byte(secret), openStore(t, addr, c))
	ip, ua := []byte{203, 0, 113, 7}, "Mozilla/5.0 Firefox/133.0"
	id := func(client string, at time.Time, ua string) uint64 {
		t.Helper()
		v, err := h.Cookieless(client, ip, ua, at)
		if err != nil {
			t.Fatalf("Cookieless(%q, %v) = %v", client, at, err)
		}
		return v
	}
	a := id("shop", day, ua)
	if again := id("shop", day.Add(10*time.Hour), ua); again != a {
		t.Errorf("same visitor later that day: %x; want %x", again, a)
	}
	if b := id("blog", day, ua); b == a {
		t.Errorf("same IP and user agent on clients shop and blog: both %x; want unrelated ids", a)
	}
	if o := id("shop", day, ua+" "); o == a {
		t.Errorf("other user agent: %x; want an id other than %x", o, a)
	}

	// A second instance on the same topic agrees on the salt.
	h2 := New([]byte(secret), openStore(t, addr, c))
	if v, err := h2.Cookieless("shop", ip, ua, day); err != nil || v != a {
		t.Errorf("second instance: %x, %v; want %x", v, err, a)
	}
	// Another secret with the same salts gives other ids.
	h3 := New([]byte("another secret of 32 bytes......"), openStore(t, addr, c))
	if v, err := h3.Cookieless("shop", ip, ua, day); err != nil || v == a {
		t.Errorf("other secret: %x, %v; want an id other than %x", v, err, a)
	}

	c.set(day.Add(24 * time.Hour))
	if next := id("shop", day.Add(24*time.Hour), ua); next == a {
		t.Errorf("next day: %x; want an id other than the day before's", next)
	}

	if h.Cookie("shop", "abc") == h.Cookie("blog", "abc") {
		t.Error("one cookie id on two clients gives the same visitor id; want unrelated ids")
	}
	if h.Cookie("sho", "pabc") == h.Cookie("shop", "abc") {
		t.Error("parts are not length-prefixed: (sho, pabc) and (shop, abc) collide")
	}
}

// TestSaltDestruction: after its day and the grace period, a day's salt
// cannot be read back from Kafka by anyone, and its ids cannot be made.
func TestSaltDestruction(t *testing.T) {
	_, addr := kafkatest.Start(t)
	day := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	c := &clock{t: day}
	s := openStore(t, addr, c)
	h := New([]byte(secret), s)
	old, err := s.Salt(day)
	if err != nil {
		t.Fatal(err)
	}
	old = bytes.Clone(old)
	if _, err := h.Cookieless("shop", []byte{1, 2, 3, 4}, "UA", day); err != nil {
		t.Fatal(err)
	}

	// Past midnight but inside the grace period the old salt lives on.
	c.set(day.Add(90 * time.Minute))
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Salt(day); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("Salt(%v) in the grace period = %x, %v; want the day's salt", day, got, err)
	}
	if !topicHolds(t, addr, old) {
		t.Fatal("the salt topic lacks the live salt; the test could not see a deletion")
	}

	// After the grace period Rotate destroys it.
	c.set(day.Add(3 * time.Hour))
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if topicHolds(t, addr, old) {
		t.Error("after its day the old salt can still be read from the salt topic")
	}
	if _, err := s.Salt(day); !errors.Is(err, ErrSaltGone) {
		t.Errorf("Salt(%v) after destruction = %v; want ErrSaltGone", day, err)
	}
	fresh := New([]byte(secret), openStore(t, addr, c))
	if _, err := fresh.Cookieless("shop", []byte{1, 2, 3, 4}, "UA", day); !errors.Is(err, ErrSaltGone) {
		t.Errorf("a new instance making an id of the destroyed day: %v; want ErrSaltGone", err)
	}
	// Today's salt survived the deletion.
	today, err := s.Salt(c.now())
	if err != nil || bytes.Equal(today, old) {
		t.Errorf("today's salt = %x, %v; want a live salt other than the old one", today, err)
	}
	if !topicHolds(t, addr, today) {
		t.Error("today's salt was deleted from the topic along with the old one")
	}
}

// topicHolds reads the salt topic from its start, as an outsider with a
// plain consumer would, and reports whether any record holds salt.
func topicHolds(t *testing.T, addr string, salt []byte) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"salts": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return false
		}
		found := false
		fetches.EachRecord(func(r *kgo.Record) {
			if bytes.Equal(r.Value, salt) {
				found = true
			}
		})
		if found {
			return true
		}
	}
}

// TestInstancesAgreeOnANewDaysSalt: instances that ask for a day's salt at
// the same moment, each with its own client, all get the same one, and so
// does an instance that opens afterwards. Before the winner was the day's
// first record it was its smallest key, which a later write could change
// after an instance had used its own.
func TestInstancesAgreeOnANewDaysSalt(t *testing.T) {
	_, addr := kafkatest.Start(t)
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	c := &clock{t: day}
	stores := make([]*SaltStore, 4)
	for i := range stores {
		stores[i] = openStore(t, addr, c)
	}
	for trial := range 10 {
		at := day.Add(time.Duration(trial) * 24 * time.Hour)
		c.set(at)
		salts := make([][]byte, len(stores))
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() { salts[i], errs[i] = s.Salt(at) })
		}
		wg.Wait()
		late, err := openStore(t, addr, c).Salt(at)
		if err != nil {
			t.Fatal(err)
		}
		for i := range stores {
			if errs[i] != nil {
				t.Fatalf("trial %d: instance %d: %v", trial, i, errs[i])
			}
			if !bytes.Equal(salts[i], late) {
				t.Errorf("trial %d: instance %d uses salt %x, an instance opened later %x; want one salt", trial, i, salts[i], late)
			}
		}
	}
}

// TestRotateMakesTomorrowsSaltAndKeepsWinners: Rotate writes tomorrow's
// salt a day ahead, and destroying old salts (copies of the live ones,
// then a deletion below them) never changes a live day's winner, even when
// a second, losing record of that day is in the topic.
func TestRotateMakesTomorrowsSaltAndKeepsWinners(t *testing.T) {
	_, addr := kafkatest.Start(t)
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c := &clock{t: day}
	s := openStore(t, addr, c)
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	tomorrow := day.Add(24 * time.Hour)
	if !topicHasDay(t, addr, dayOf(tomorrow)) {
		t.Fatalf("after Rotate on %s the topic holds no salt for %s", dayOf(day), dayOf(tomorrow))
	}
	winner, err := s.Salt(tomorrow)
	if err != nil {
		t.Fatal(err)
	}
	winner = bytes.Clone(winner)
	// A losing write for tomorrow, as from an instance that raced.
	if err := s.cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte(dayOf(tomorrow) + "/00"), Value: bytes.Repeat([]byte{7}, 32)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.set(tomorrow.Add(2 * time.Hour)) // the first day is over, grace too
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if topicHasDay(t, addr, dayOf(day)) {
		t.Errorf("after rotation the salt of %s is still in the topic", dayOf(day))
	}
	for name, st := range map[string]*SaltStore{"rotating instance": s, "new instance": openStore(t, addr, c)} {
		if got, err := st.Salt(tomorrow); err != nil || !bytes.Equal(got, winner) {
			t.Errorf("%s: Salt(%s) = %x, %v; want the first-written salt %x", name, dayOf(tomorrow), got, err, winner)
		}
	}
}

// topicHasDay reports whether the salt topic holds a live record of day.
func topicHasDay(t *testing.T, addr, day string) bool {
	t.Helper()
	found := false
	err := kafkastate.ReadPartition(t.Context(), []kgo.Opt{kgo.SeedBrokers(addr)}, "salts", 0, func(r *kgo.Record) {
		if d, _, _ := strings.Cut(string(r.Key), "/"); d == day && r.Value != nil {
			found = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
