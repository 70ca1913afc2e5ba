package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aluminiapp/pipeline/lib/eventually"
)

// Loopback addresses: the kernel routes all of 127.0.0.0/8 to lo, so the
// visitor, a forged address and the proxy each get their own.
const (
	visitorIP  = "127.0.0.5" // the stream's visitor
	excludedIP = "127.0.0.2" // shop's staff, excluded in the registry
	proxyIP    = "127.0.0.3" // nginx's address towards the collectors
)

// nginxConf puts two collectors behind nginx as docs/collector.md's
// first-party snippet does. Every path nginx writes is under dir, so it
// needs no root and no system nginx. POSTs are retried on the other
// collector only when the first failed before answering (a connection
// closed by a stopping collector): the event ids make a retry harmless.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log info;
events { worker_connections 1024; }
http {
    client_body_temp_path {{dir}}/body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;
    log_format upstream '$remote_addr "$request" $status $upstream_addr $upstream_status';
    access_log {{dir}}/access.log upstream;
    upstream alumini_collector {
        server {{a}} max_fails=1 fail_timeout=1s;
        server {{b}} max_fails=1 fail_timeout=1s;
        keepalive 32;
    }
    server {
        listen {{listen}};
        location / {
            proxy_pass http://alumini_collector;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_bind {{proxy}};
            proxy_next_upstream error timeout http_502 non_idempotent;
            proxy_next_upstream_tries 2;
        }
    }
}
`

// startNginx runs nginx in front of the collectors and returns its address.
func startNginx(t *testing.T, collectors ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // not on a non-root PATH
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("nginx not installed (deploy/deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	conf := strings.NewReplacer("{{dir}}", dir, "{{a}}", collectors[0], "{{b}}", collectors[1],
		"{{listen}}", listen, "{{proxy}}", proxyIP).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
			t.Logf("stopping nginx: %v", err)
		}
		if err := cmd.Wait(); err != nil {
			t.Logf("nginx: %v", err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log")) // only for the failure message.
			t.Logf("nginx error log:\n%s", log)
		}
	})
	eventually.True(t, 10*time.Second, "nginx to listen on "+listen, func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return listen
}

// clientFrom sends requests from a loopback address of its own.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64},
	}
}

// sendEvent posts one event through the load balancer; forwarded is an
// X-Forwarded-For the sender forges ("" for none).
func sendEvent(c *http.Client, lb, id, forwarded string) (int, error) {
	body := fmt.Sprintf(`{"client_id":"shop","url":"https://shop.example/p","event_id":%q}`, id)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+lb+"/api/event", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
	if forwarded != "" {
		req.Header.Set("X-Forwarded-For", forwarded)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

// TestRollingRestartBehindNginx: two collectors behind nginx take a steady
// open-loop stream while each in turn gets SIGTERM and starts again. No
// request fails, every event is stored once, and the collectors see the
// visitor's address as nginx forwarded it: not nginx's own, and not the one
// the visitor forged.
func TestRollingRestartBehindNginx(t *testing.T) {
	clients := fmt.Sprintf(`clients:
  - id: shop
    domains: [shop.example]
    exclude:
      ip_ranges: [%s]
`, excludedIP)
	collectorArgs := []string{
		"-trusted-proxies", proxyIP + "/32",
		// nginx has no health checks: the drain delay keeps intake open
		// while requests already routed here arrive.
		"-drain-delay", "500ms",
		// One visitor sends the whole stream.
		"-ip-rate-limit", "0",
	}
	s := startStack(t, clients, []string{"sinker", "enricher", "collector-a", "collector-b"},
		map[string][]string{"collector-a": collectorArgs, "collector-b": collectorArgs})
	lb := startNginx(t, s.ports["collector-a"], s.ports["collector-b"])

	// The stream: one request every 5 ms, each on its own, whatever the
	// earlier ones are doing (open loop: a stall shows as failures or
	// latency, not as a slower sender).
	visitor := clientFrom(visitorIP)
	var (
		mu       sync.Mutex
		sent     []string
		failures []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("lb-%06d", n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, err := sendEvent(visitor, lb, id, excludedIP)
				mu.Lock()
				defer mu.Unlock()
				sent = append(sent, id)
				if err != nil || status != http.StatusAccepted {
					failures = append(failures, fmt.Sprintf("%s: %d %v", id, status, err))
				}
			}()
		}
	}()
	sentSoFar := func() int { mu.Lock(); defer mu.Unlock(); return len(sent) }

	// Rolling restart: each collector stops (SIGTERM, drain, flush) and
	// starts again while the other one serves; the next one stops only
	// once nginx sends to the restarted one again, as a rollout waits for
	// a new pod to be ready and in the endpoints. (nginx takes a server
	// that failed back after fail_timeout; stopping the other one before
	// then leaves it no server at all: "no live upstreams", 502.)
	eventually.True(t, 10*time.Second, "the stream to start", func() bool { return sentSoFar() >= 100 })
	for _, c := range []string{"collector-a", "collector-b"} {
		s.stop(c)
		before := sentSoFar()
		eventually.True(t, 10*time.Second, "requests while "+c+" is down", func() bool { return sentSoFar() >= before+100 })
		s.start(c)
		eventually.True(t, 20*time.Second, "nginx to send to "+c+" again", func() bool {
			return metricValue(t, s.admin[c], "alumini_collector_events_accepted_total") >= 50
		})
	}
	close(stop)
	<-streamDone
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during the rolling restart; first: %v", len(failures), len(sent), failures[:min(5, len(failures))])
	}

	// The visitor's real address, forwarded by nginx, is shop's excluded
	// staff address now.
	staff := clientFrom(excludedIP)
	const probes = 10
	for i := range probes {
		if status, err := sendEvent(staff, lb, fmt.Sprintf("staff-%d", i), ""); err != nil || status/100 != 2 {
			t.Fatalf("staff request = %d, %v; want 2xx (dropped quietly)", status, err)
		}
	}
	excluded := 0
	for _, c := range []string{"collector-a", "collector-b"} {
		excluded += metricValue(t, s.admin[c], `alumini_collector_events_dropped_total{reason="excluded_ip"}`)
	}
	if excluded != probes {
		t.Errorf("collectors dropped %d events as excluded_ip; want the %d sent from %s through nginx", excluded, probes, excludedIP)
	}

	// Every event of the stream once in ClickHouse, none of the staff's.
	want := map[string]bool{}
	for _, id := range sent {
		want[id] = true
	}
	var got map[string]uint64
	eventually.True(t, 60*time.Second, fmt.Sprintf("%d events in ClickHouse", len(sent)), func() bool {
		got = storedEvents(t, s)
		return len(got) >= len(sent)
	})
	for id, n := range got {
		switch {
		case !want[id]:
			t.Errorf("stored event %s, which was not sent (or was excluded)", id)
		case n != 1:
			t.Errorf("event %s stored %d times; want once", id, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("stored %d distinct events; sent %d", len(got), len(want))
	}
	t.Logf("%d events through nginx during a rolling restart of two collectors: 0 failed, each stored once", len(sent))
}

// storedEvents counts the stored rows of each event id, as reports see
// them (FINAL: a replayed copy is collapsed).
func storedEvents(t *testing.T, s *stack) map[string]uint64 {
	t.Helper()
	rows, err := s.db.Query(context.Background(), "SELECT event_id, count() FROM events FINAL WHERE client_id = 'shop' GROUP BY event_id")
	if err != nil {
		t.Fatalf("querying events: %v", err)
	}
	defer rows.Close()
	got := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		got[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// metricValue reads one sample of a counter from an admin endpoint (0 when
// the series does not exist yet).
func metricValue(t *testing.T, admin, series string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return int(n)
		}
	}
	return 0
}

// TestPipelineOnSASLKafka runs the collector, enricher and sinker against a
// broker that takes only SCRAM-SHA-512 clients, as the chart's production
// values configure them, and follows one event into ClickHouse.
func TestPipelineOnSASLKafka(t *testing.T) {
	sasl := []string{"-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-username", "alumini", "-kafka-sasl-password", "s3cret"}
	s := startStack(t, "clients: [{id: shop}]\n", []string{"sinker", "enricher", "collector"},
		map[string][]string{"sinker": sasl, "enricher": sasl, "collector": sasl},
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "alumini", "s3cret"))
	if status, err := sendEvent(http.DefaultClient, s.ports["collector"], "sasl-1", ""); err != nil || status != http.StatusAccepted {
		t.Fatalf("POST = %d, %v; want 202", status, err)
	}
	eventually.True(t, 30*time.Second, "the event in ClickHouse", func() bool { return storedEvents(t, s)["sasl-1"] == 1 })
}
