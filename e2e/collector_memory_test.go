package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
// admitted them against -max-inflight-bytes (figures in docs/collector.md). Its peak RSS,
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
	bin := buildBinaries(t)
	_, broker := kafkatest.Start(t)
	dir := t.TempDir()
	clients := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(clients, []byte("clients:\n  - id: blog\n    write_keys: [wk_blog]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{
		t: t, bin: bin, dir: dir,
		env: []string{"ALUMINI_KAFKA_BROKERS=" + broker, "ALUMINI_KAFKA_PARTITIONS=3", "ALUMINI_CLIENTS_FILE=" + clients,
			"ALUMINI_MAX_INFLIGHT_BYTES=" + strconv.Itoa(budget), "ALUMINI_MAX_CONCURRENCY=" + strconv.Itoa(maxConns),
			"ALUMINI_IP_RATE_LIMIT=0", "ALUMINI_CLIENT_RATE_LIMIT=0", "ALUMINI_LOG_LEVEL=warn"},
		ports:     map[string]string{"collector": freeAddr(t)},
		admin:     map[string]string{"collector": freeAddr(t)},
		procs:     map[string]*exec.Cmd{},
		exited:    map[string]chan error{},
		instances: []string{"collector"},
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "ALUMINI_") {
			s.env = append(s.env, kv) // the collector's own GC defaults
		}
	}
	t.Cleanup(s.stopAll) // after the connections below are closed: a clean shutdown
	s.start("collector")
	addr, admin, pid := s.ports["collector"], s.admin["collector"], s.procs["collector"].Process.Pid
	startRSS := procStatus(t, pid, "VmRSS")

	bound := int64(rssBase + rssPerBudget*budget + maxConns*rssPerConn)
	// 1 MB batches: 400 events of about 2.6 KB (long URLs and titles), as
	// native JSON and as a Segment batch (decoded by encoding/json, which
	// allocates more per byte).
	var native, segment strings.Builder
	native.WriteByte('[')
	segment.WriteString(`{"batch":[`)
	for i := range 400 {
		if i > 0 {
			native.WriteByte(',')
			segment.WriteByte(',')
		}
		fmt.Fprintf(&native, `{"client_id":"blog","url":"https://blog.example/%s","title":"%s","properties":{"n":%d}}`,
			strings.Repeat("p", 2000), strings.Repeat("t", 500), i)
		fmt.Fprintf(&segment, `{"type":"track","anonymousId":"a%d","event":"Read","context":{"page":{"url":"https://blog.example/%s","title":"%s"}},"properties":{"n":%d}}`,
			i, strings.Repeat("p", 2000), strings.Repeat("t", 450), i)
	}
	native.WriteByte(']')
	segment.WriteString(`]}`)
	for _, burst := range []struct {
		path, body string
		ok         string
	}{
		{"/api/batch", native.String(), "202"},
		{"/v1/batch", segment.String(), "200"},
	} {
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
				s := postRaw(addr, burst.path, []byte(burst.body))
				mu.Lock()
				statuses[s]++
				mu.Unlock()
			}()
		}
		close(startGate)
		wg.Wait()
		peak := procStatus(t, pid, "VmHWM")
		t.Logf("%d connections posting %d-byte batches to %s: %v; RSS %d MiB at start, peak %d MiB; bound %d MiB",
			conns, len(burst.body), burst.path, statuses, startRSS>>20, peak>>20, bound>>20)
		if statuses[burst.ok] == 0 {
			t.Errorf("no batch was accepted (%v); the test did not exercise reading and producing", statuses)
		}
		if statuses["503"] == 0 {
			t.Errorf("no batch was refused with 503 (%v); the budget was not reached", statuses)
		}
		if peak > bound {
			t.Errorf("peak RSS %d MiB; want under %d MiB (docs/collector.md sizing rule)", peak>>20, bound>>20)
		}
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
	if s := postRaw(addr, "/api/event", nil); s != "503" {
		t.Errorf("connection past -max-concurrency = %s; want 503", s)
	}
	if got := metric(t, "http://"+admin+"/metrics", "alumini_collector_connections_refused_total"); got != "1" {
		t.Errorf("alumini_collector_connections_refused_total = %s; want 1", got)
	}
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("%d stalled connections with 15 KiB heads: RSS %d MiB, peak %d MiB", maxConns, procStatus(t, pid, "VmRSS")>>20, peak>>20)
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

// postRaw posts body to path on its own connection and returns the
// status, or "reset" when the collector closed the connection before the
// client could read an answer: it answers 503 as soon as the head arrives
// and closes, while the client may still be writing the body.
func postRaw(addr, path string, body []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial error"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // a failed deadline shows as a read error below
	go func() {
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic d2tfYmxvZzo=\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body)) // wk_blog:
		_, _ = c.Write(body)                                                                                                                                                // the collector may refuse and close before it is all sent
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
