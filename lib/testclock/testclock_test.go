package testclock

import (
	"path/filepath"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	t.Setenv(Env, "")
	if now := FromEnv()(); time.Since(now) > time.Minute {
		t.Errorf("without %s: %v; want the wall clock", Env, now)
	}
	path := filepath.Join(t.TempDir(), "clock")
	t.Setenv(Env, path)
	clock := FromEnv()
	want := time.Date(2026, 11, 25, 23, 59, 30, 0, time.UTC)
	if err := Set(path, want); err != nil {
		t.Fatal(err)
	}
	if got := clock(); !got.Equal(want) {
		t.Errorf("clock() = %v; want %v", got, want)
	}
	if err := Set(path, want.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := clock(); !got.Equal(want.Add(time.Minute)) {
		t.Errorf("clock() after Set = %v; want %v", got, want.Add(time.Minute))
	}
}
