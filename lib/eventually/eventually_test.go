package eventually

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestWithinSeesTheConditionTurnTrue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		turns := start.Add(3 * time.Second)
		if !Within(10*time.Second, func() bool { return !time.Now().Before(turns) }) {
			t.Fatal("Within = false for a condition that turns true after 3s of 10s")
		}
		if late := time.Since(start) - 3*time.Second; late > maxInterval {
			t.Errorf("saw the condition %v after it turned true; want at most %v", late, maxInterval)
		}
	})
}

func TestWithinGivesUpAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		asked := 0
		if Within(time.Second, func() bool { asked++; return false }) {
			t.Fatal("Within = true for a condition that never holds")
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("gave up after %v; want exactly the 1s deadline", d)
		}
		if asked < 2 {
			t.Errorf("asked the condition %d times; want it asked again at the deadline", asked)
		}
	})
}

func TestWithinAsksOnceWhenTrue(t *testing.T) {
	asked := 0
	if !Within(0, func() bool { asked++; return true }) || asked != 1 {
		t.Errorf("Within(0, true) asked %d times; want true after one", asked)
	}
}
