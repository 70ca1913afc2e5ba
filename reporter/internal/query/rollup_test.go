package query

import (
	"reflect"
	"testing"
	"time"
)

// TestRollBatches: a day's clients are rolled in batches of at most
// rollBatch events, in order, a client above it alone.
func TestRollBatches(t *testing.T) {
	counts := map[dayKey]uint64{
		{"a", 7}: 200_000, {"b", 7}: 250_000, {"c", 7}: 100_000, {"d", 7}: 900_000, {"e", 7}: 1, {"f", 7}: 0,
	}
	got := rollBatches(7, []string{"a", "b", "c", "d", "e", "f"}, counts)
	want := [][]string{{"a", "b"}, {"c"}, {"d"}, {"e", "f"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rollBatches = %v; want %v", got, want)
	}
}

// TestRolledDays: the days of a range with a roll give their versions,
// the others merge into the parts counted from events.
func TestRolledDays(t *testing.T) {
	day := func(d int) int64 { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC).Unix() }
	r := Range{From: time.Unix(day(1)-3600, 0), To: time.Unix(day(5)+7200, 0)} // 23:00 on 28 Feb to 02:00 on 5 March
	have := map[uint32]uint64{uint32(day(2) / 86400): 20, uint32(day(3) / 86400): 30}
	got := rolledDaysOf(r, have)
	want := rolledDays{rolls: []uint64{20, 30}, tail: [][2]int64{{day(1) - 3600, day(2)}, {day(4), day(5) + 7200}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rolledDaysOf = %+v; want %+v", got, want)
	}
}
