package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

// Sizing rule of docs/collector.md ("Limits and abuse"): the collector's
// resident memory stays under
//
//	rssBase + rssPerBudget × -max-inflight-bytes + -max-concurrency × rssPerConn
//
// whatever clients send.
const (
	rssBase      = 48 << 20
	rssPerBudget = 3        // the budget's bytes, the garbage the GC lets grow beside them (GOGC=200)
	rssPerConn   = 32 << 10 // a 16 KiB read buffer, a 4 KiB write buffer, up to 8 KiB of body read before admission, the goroutine
)

// TestMemoryIsBoundedUnderLargeBodies runs the built collector, as an
// operator does, and has 500 connections each post a 1 MB batch at once:
// the bodies alone are 500 MB, which the collector held in full before it
// admitted them against -max-inflight-bytes (RSS 524 MiB). Its peak RSS,
// read from /proc, must stay under the documented bound.
func TestMemoryIsBoundedUnderLargeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the collector")
	}
	const (
		conns    = 500
		budget   = 32 << 20
		maxConns = 1000
	)
	bin := filepath.Join(t.TempDir(), "collector")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, broker := kafkatest.Start(t)
	dir := t.TempDir()
	clients := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(clients, []byte("clients:\n  - id: blog\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "-listen-addr", addr, "-admin-addr", admin, "-kafka-brokers", broker, "-kafka-partitions", "3",
		"-clients-file", clients, "-max-inflight-bytes", strconv.Itoa(budget), "-max-concurrency", strconv.Itoa(maxConns),
		"-ip-rate-limit", "0", "-client-rate-limit", "0", "-log-level", "warn")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "ALUMINI_") {
			cmd.Env = append(cmd.Env, kv) // the collector's own GC defaults
		}
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Logf("killing the collector: %v", err)
		}
		_ = cmd.Wait() // killed: its exit status says so
	})
	waitReady(t, "http://"+admin+"/readyz", &logs)
	startRSS := procStatus(t, cmd.Process.Pid, "VmRSS")

	// One 1 MB batch: 400 events of about 2.6 KB (long URLs and titles).
	var b strings.Builder
	b.WriteByte('[')
	for i := range 400 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"client_id":"blog","url":"https://blog.example/%s","title":"%s","properties":{"n":%d}}`,
			strings.Repeat("p", 2000), strings.Repeat("t", 500), i)
	}
	b.WriteByte(']')
	body := []byte(b.String())

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[string]int{}
	)
	startGate := make(chan struct{})
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			s := postRaw(addr, body)
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		}()
	}
	close(startGate)
	wg.Wait()
	peak := procStatus(t, cmd.Process.Pid, "VmHWM")
	bound := int64(rssBase + rssPerBudget*budget + maxConns*rssPerConn)
	t.Logf("%d connections posting %d-byte batches: %v; RSS %d MiB at start, peak %d MiB; bound %d MiB",
		conns, len(body), statuses, startRSS>>20, peak>>20, bound>>20)
	if statuses["202"] == 0 {
		t.Errorf("no batch was accepted (%v); the test did not exercise reading and producing", statuses)
	}
	if statuses["503"] == 0 {
		t.Errorf("no batch was refused with 503 (%v); the budget was not reached", statuses)
	}
	if peak > bound {
		t.Errorf("peak RSS %d MiB; want under %d MiB (docs/collector.md sizing rule)", peak>>20, bound>>20)
	}

	// Slow clients: -max-concurrency connections each send 15 KiB of a head
	// and stall, holding their read buffers; one more is refused.
	head := "POST /api/batch HTTP/1.1\r\nHost: x\r\nCookie: c=" + strings.Repeat("v", 15<<10)
	for range maxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
	}
	if s := postRaw(addr, body); s != "503" {
		t.Errorf("connection past -max-concurrency = %s; want 503", s)
	}
	if got := metric(t, "http://"+admin+"/metrics", "alumini_collector_connections_refused_total"); got != "1" {
		t.Errorf("alumini_collector_connections_refused_total = %s; want 1", got)
	}
	peak = procStatus(t, cmd.Process.Pid, "VmHWM")
	t.Logf("%d stalled connections with 15 KiB heads: RSS %d MiB, peak %d MiB", maxConns, procStatus(t, cmd.Process.Pid, "VmRSS")>>20, peak>>20)
	if peak > bound {
		t.Errorf("peak RSS %d MiB; want under %d MiB (docs/collector.md sizing rule)", peak>>20, bound>>20)
	}
}

// metric reads one unlabelled sample from a Prometheus text page.
func metric(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return "missing"
}

// postRaw posts body to /api/batch on its own connection and returns the
// status, or "reset" when the collector closed the connection before the
// client could read an answer: it answers 503 as soon as the head arrives
// and closes, while the client may still be writing the body.
func postRaw(addr string, body []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial error"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // a failed deadline shows as a read error below
	go func() {
		fmt.Fprintf(c, "POST /api/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		_, _ = c.Write(body) // the collector may refuse and close before it is all sent
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "reset"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

func waitReady(t *testing.T, url string, logs *bytes.Buffer) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("collector not ready within 30s; log:\n%s", logs.String())
}

// procStatus reads a size in bytes ("VmRSS", "VmHWM": the peak) from
// /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// freeAddr is a loopback address free to listen on, below the kernel's
// ephemeral ports (see e2e's freeAddr).
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(8000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port in 20000-27999")
	return ""
}
