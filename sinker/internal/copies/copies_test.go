package copies

import (
	"context"
	"testing"
)

// log is a partition's records: the event each holds ("" for a record
// that is no storable event).
type log []string

func (l log) load(loads *int) Loader {
	return func(_ context.Context, _ int, from, to int64, fn func(int64, string, string)) error {
		*loads++
		for at := from; at < to && at < int64(len(l)); at++ {
			if l[at] != "" {
				fn(at, "shop", l[at])
			}
		}
		return nil
	}
}

// answers asks w about records [from, to) of l in order.
func answers(t *testing.T, w *Window, l log, from, to int) []bool {
	t.Helper()
	var got []bool
	for at := from; at < to; at++ {
		if l[at] == "" {
			if err := w.Skip(t.Context(), 0, int64(at)); err != nil {
				t.Fatal(err)
			}
			got = append(got, false)
			continue
		}
		first, err := w.First(t.Context(), 0, int64(at), "shop", l[at])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, first)
	}
	return got
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFirstCopyEverywhere: the first record of an event is its copy to
// store, whether the window meets the records in order, again in a replay,
// or after taking the partition over at an offset in the middle (it reads
// the records before it back).
func TestFirstCopyEverywhere(t *testing.T) {
	l := log{"a", "b", "a", "", "c", "b", "a", "d"}
	want := []bool{true, true, false, false, true, false, false, true}
	loads := 0
	w := New(100, l.load(&loads))
	if got := answers(t, w, l, 0, len(l)); !equal(got, want) {
		t.Fatalf("in order: %v; want %v", got, want)
	}
	if got := answers(t, w, l, 2, len(l)); !equal(got, want[2:]) {
		t.Errorf("replay from offset 2: %v; want %v", got, want[2:])
	}
	if loads != 1 {
		t.Errorf("%d read-backs; want 1 (at the first record)", loads)
	}
	taken := New(100, l.load(&loads))
	if got := answers(t, taken, l, 5, len(l)); !equal(got, want[5:]) {
		t.Errorf("taken over at offset 5: %v; want %v", got, want[5:])
	}
	// A gap (the partition was away and came back further on) reads back.
	gap := New(100, l.load(&loads))
	answers(t, gap, l, 0, 2)
	before := loads
	if got := answers(t, gap, l, 6, len(l)); !equal(got, want[6:]) || loads != before+1 {
		t.Errorf("after a gap: %v with %d read-backs; want %v with 1", got, loads-before, want[6:])
	}
}

// TestWindowIsBounded: copies further apart than the window are both
// first; memory holds at most size events.
func TestWindowIsBounded(t *testing.T) {
	l := log{"a", "b", "c", "a"}
	loads := 0
	w := New(2, l.load(&loads))
	if got := answers(t, w, l, 0, len(l)); !equal(got, []bool{true, true, true, true}) {
		t.Errorf("window of 2: %v; want every record first", got)
	}
	if p := w.parts[0]; len(p.first) > 2 || len(p.ring) > 2 {
		t.Errorf("window of 2 holds %d events", len(p.first))
	}
	w = New(3, l.load(&loads))
	if got := answers(t, w, l, 0, len(l)); !equal(got, []bool{true, true, true, false}) {
		t.Errorf("window of 3: %v; want the second a to be a copy", got)
	}
}

// TestClientsAreApart: one event id of two clients is two events.
func TestClientsAreApart(t *testing.T) {
	w := New(10, func(context.Context, int, int64, int64, func(int64, string, string)) error { return nil })
	for i, client := range []string{"shop", "blog"} {
		if first, err := w.First(t.Context(), 0, int64(i), client, "e1"); err != nil || !first {
			t.Errorf("%s's e1: first = %v, %v; want true", client, first, err)
		}
	}
}
