// Package faultpoint lets the crash tests SIGKILL the sinker at a named
// point of its work, so that exactly-once is proven against a real process
// dying where it hurts most, not against a simulation.
//
// It is off unless the environment variable ALUMINI_SINKER_FAULT is set
// (to "point:n", meaning the n-th time the point is reached, counting from
// 1); the cost when off is one atomic load per call.
package faultpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// EnvVar holds the fault to inject, "point:n".
const EnvVar = "ALUMINI_SINKER_FAULT"

// Points where the sink calls Hit or Arm.
const (
	BeforeInsert = "before_insert" // a batch is in hand, nothing of it stored
	DuringInsert = "during_insert" // the insert is on the wire (Arm)
	AfterInsert  = "after_insert"  // stored, offsets not yet committed
)

// duringDelay is how long after an armed insert starts the process dies:
// long enough that the block is being sent, short against a batch insert.
const duringDelay = 2 * time.Millisecond

var (
	point string
	at    int64
	seen  atomic.Int64
)

func init() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	p, n, ok := strings.Cut(spec, ":")
	v, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || v < 1 {
		fmt.Fprintf(os.Stderr, "%s=%q: want point:n with n >= 1\n", EnvVar, spec)
		os.Exit(2)
	}
	point, at = p, v
}

// Hit kills the process if this is the configured point's n-th hit.
func Hit(name string) {
	if at == 0 || name != point {
		return
	}
	if seen.Add(1) == at {
		kill()
	}
}

// Arm kills the process shortly after it returns if this is the configured
// point's n-th hit; the caller goes on to do what should be interrupted.
func Arm(name string) {
	if at == 0 || name != point {
		return
	}
	if seen.Add(1) == at {
		time.AfterFunc(duringDelay, kill)
	}
}

func kill() {
	fmt.Fprintf(os.Stderr, "faultpoint: SIGKILL at %s:%d\n", point, at)
	// SIGKILL, not exit: no deferred function, no flush, no commit runs.
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		panic(err)
	}
	select {} // the signal is on its way
}
