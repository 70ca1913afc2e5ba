package kafkagroup

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
)

// TestCommitterMergesWhatPilesUpAndCommitsTheRestAtStop holds the first
// commit in flight while more offsets arrive: they must be merged into one
// commit (the latest offset of each partition), and Stop must commit what
// is still pending before it returns.
func TestCommitterMergesWhatPilesUpAndCommitsTheRestAtStop(t *testing.T) {
	var (
		mu      sync.Mutex
		commits []map[int]int64
	)
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	commit := func(_ context.Context, next map[int]int64) error {
		if first {
			first = false
			close(entered)
			<-release
		}
		mu.Lock()
		commits = append(commits, maps.Clone(next))
		mu.Unlock()
		return nil
	}
	c := NewCommitter(context.Background(), commit, func(err error, _ int) { t.Errorf("commit failed: %v", err) })
	c.Add(map[int]int64{0: 10})
	<-entered // the first commit is in flight
	c.Add(map[int]int64{0: 20, 1: 5})
	c.Add(map[int]int64{0: 30})
	c.Add(map[int]int64{1: 4}) // older than what is pending: the latest offset wins
	close(release)
	c.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	want := []map[int]int64{{0: 10}, {0: 30, 1: 5}}
	if len(commits) != len(want) {
		t.Fatalf("commits = %v; want %v", commits, want)
	}
	for i := range want {
		if !maps.Equal(commits[i], want[i]) {
			t.Errorf("commit %d = %v; want %v", i, commits[i], want[i])
		}
	}
}

// TestCommitterReportsFailures checks that a failed commit reaches the
// failure callback with the number of partitions it covered.
func TestCommitterReportsFailures(t *testing.T) {
	boom := errors.New("rebalance in progress")
	failed := make(chan int, 1)
	c := NewCommitter(context.Background(), func(context.Context, map[int]int64) error { return boom },
		func(err error, partitions int) {
			if !errors.Is(err, boom) {
				t.Errorf("failure = %v; want %v", err, boom)
			}
			failed <- partitions
		})
	c.Add(map[int]int64{0: 1, 3: 7})
	c.Stop(context.Background())
	select {
	case n := <-failed:
		if n != 2 {
			t.Errorf("failed commit covered %d partitions; want 2", n)
		}
	default:
		t.Error("a failed commit was not reported")
	}
}
