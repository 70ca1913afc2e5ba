package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
)

// lockedBuffer collects the reporter's log for the failure message and for
// its listen address.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenAddrLog = regexp.MustCompile(`"listen_addr":"([0-9.]+:[0-9]+)"`)

// rssKiB reads a process's resident set size from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestReporterRSSBoundedUnderKeyFlood runs the built reporter and sends it
// 100,000 random API keys from 1,000 loopback addresses (127.77.x.y; Linux
// routes all of 127/8 to lo), more addresses than -limiter-entries
// holds. The reporter once kept a limiter per key tried, for ever; now a
// wrong key leaves no state, the address table is bounded, and every
// address gets 429 once it spent its failed-authentication budget. The
// RSS is read from /proc before and after the flood.
func TestReporterRSSBoundedUnderKeyFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and floods the reporter binary")
	}
	const (
		addresses  = 1000
		perAddress = 100
		burst      = 20
		entries    = 500
		// The reporter's live heap is a few MiB; the Go runtime lets the
		// heap grow to twice the live size between collections, so RSS
		// moves by some MiB without any leak. The per-key map this test
		// guards against grew by tens of MiB per 100,000 keys (issue 18;
		// figures in docs/reporter.md).
		maxGrowthKiB = 16 << 10
	)
	database, _ := chtest.Database(t)
	dir := t.TempDir()
	clients := fmt.Sprintf("clients:\n  - id: shop\n    api_key_hashes: [%q]\n", registry.HashAPIKey("alm_right_key"))
	if err := os.WriteFile(filepath.Join(dir, "clients.yaml"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "reporter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"-listen-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-clients-file", filepath.Join(dir, "clients.yaml"),
		"-clickhouse-addr", chtest.Addr(), "-clickhouse-database", database,
		"-auth-failure-burst", strconv.Itoa(burst), "-limiter-entries", strconv.Itoa(entries))
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // killed by the cancel: the error says so
		if t.Failed() {
			t.Logf("reporter log:\n%s", logs.String())
		}
	})
	var base string
	eventually.True(t, 30*time.Second, "the reporter to log its listen address", func() bool {
		if m := listenAddrLog.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})

	var statuses [600]atomic.Int64
	flood := func(first, n int) {
		var wg sync.WaitGroup
		next := atomic.Int64{}
		next.Store(int64(first))
		for range 8 {
			wg.Go(func() {
				for {
					a := int(next.Add(1)) - 1
					if a >= first+n {
						return
					}
					dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 77, byte(a/250), byte(1+a%250))}}
					tr := &http.Transport{DialContext: dialer.DialContext}
					client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
					for range perAddress {
						req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/stats/realtime", nil)
						req.Header.Set("Authorization", "Bearer alm_"+rand.Text())
						resp, err := client.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						statuses[resp.StatusCode].Add(1)
					}
					tr.CloseIdleConnections()
				}
			})
		}
		wg.Wait()
	}
	// A warm-up settles the server's own buffers and pools first.
	flood(0, 50)
	before := rssKiB(t, cmd.Process.Pid)
	for i := range statuses {
		statuses[i].Store(0)
	}
	flood(50, addresses)
	after := rssKiB(t, cmd.Process.Pid)
	t.Logf("reporter RSS %d KiB before, %d KiB after %d random keys from %d addresses (%d × 401, %d × 429)",
		before, after, addresses*perAddress, addresses, statuses[401].Load(), statuses[429].Load())
	if got := statuses[401].Load() + statuses[429].Load(); got != addresses*perAddress {
		t.Fatalf("%d answers were 401 or 429; want all %d", got, addresses*perAddress)
	}
	// Each address gets its budget of 401s (a little more when its bucket
	// refilled or was forgotten among more addresses than the table
	// holds), then 429s.
	if n := statuses[401].Load(); n < addresses*burst || n > addresses*perAddress/2 {
		t.Errorf("401 answers = %d; want about %d (the failed-authentication burst of each address)", n, addresses*burst)
	}
	if after-before > maxGrowthKiB {
		t.Errorf("reporter RSS grew from %d KiB to %d KiB under the key flood; want at most %d KiB more", before, after, maxGrowthKiB)
	}
}
