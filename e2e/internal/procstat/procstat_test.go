package procstat

import (
	"net"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3", []int{0, 1, 2, 3}},
		{"0,2,4-5", []int{0, 2, 4, 5}},
	} {
		got, err := ParseCPUList(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1-"} {
		if got, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) = %v; want an error", bad, got)
		}
	}
}

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's 10 ms ticks must have counted some of it.
	x := 0
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		x++
	}
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time after 100 ms of spinning (%d turns) = %v; want more than %v", x, after, before)
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Error("CPUTime of a process that does not exist: want an error")
	}
}

func TestListenerFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pid, err := Listener(port)
	if err != nil || pid != os.Getpid() {
		t.Errorf("Listener(%d) = %d, %v; want this process, %d", port, pid, err, os.Getpid())
	}
}

func TestPinRestrictsEveryThread(t *testing.T) {
	var was unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for c := range 1024 {
		if was.IsSet(c) {
			cpu = c
			break
		}
	}
	pid := os.Getpid()
	t.Cleanup(func() {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				unix.SchedSetaffinity(tid, &was) //nolint:errcheck // restoring a test's own threads; a thread gone is fine.
			}
		}
	})
	if err := Pin(pid, []int{cpu}); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // exited meanwhile
		}
		if set.Count() != 1 || !set.IsSet(cpu) {
			t.Errorf("thread %d may run on %d cores after Pin(%d, [%d]); want only core %d", tid, set.Count(), pid, cpu, cpu)
		}
	}
}

func TestMachineBusyCountsThisProcess(t *testing.T) {
	before, err := MachineBusy()
	if err != nil {
		t.Fatal(err)
	}
	own, _ := CPUTime(os.Getpid())
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
	}
	after, err := MachineBusy()
	if err != nil {
		t.Fatal(err)
	}
	ownAfter, _ := CPUTime(os.Getpid())
	if after-before < ownAfter-own {
		t.Errorf("machine busy for %v while this process alone used %v; want at least as much", after-before, ownAfter-own)
	}
}

func TestRunQueueWaitOfThisProcess(t *testing.T) {
	if _, err := RunQueueWait(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := RunQueueWait(1 << 30); err == nil {
		t.Error("RunQueueWait of a process that does not exist: want an error")
	}
}
