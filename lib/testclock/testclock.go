// Package testclock lets end-to-end tests set the wall clock the services
// stamp and judge events by, so a test can cross midnight UTC in seconds
// and replay a stream with the very same times.
//
// With ALUMINI_TEST_CLOCK_FILE set, Now reads the time from that file (RFC
// 3339, written by the test) at every call; otherwise it is time.Now. Only
// tests set it; nothing else in a service depends on it.
package testclock

import (
	"os"
	"strings"
	"time"
)

// Env names the file that holds the time.
const Env = "ALUMINI_TEST_CLOCK_FILE"

// FromEnv returns the clock to use: time.Now unless Env names a file.
func FromEnv() func() time.Time {
	path := os.Getenv(Env)
	if path == "" {
		return time.Now
	}
	return func() time.Time {
		b, err := os.ReadFile(path)
		if err != nil {
			return time.Now()
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
		if err != nil {
			return time.Now()
		}
		return t
	}
}

// Set writes t to the clock file at path, atomically (a rename), so a
// service never reads half a time.
func Set(path string, t time.Time) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(t.UTC().Format(time.RFC3339Nano)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
