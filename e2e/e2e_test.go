package e2e

import (
	"bytes"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/registry"
)

// services in the order they are started; stopped in reverse.
var services = []string{"reporter", "sinker", "enricher", "collector"}

type stack struct {
	t        *testing.T
	bin, dir string
	env      []string
	ports    map[string]string // service -> public address
	admin    map[string]string // service -> admin address
	procs    map[string]*exec.Cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	// Below the kernel's ephemeral range (32768 and up here): a port the
	// kernel hands out for :0 is free only until the next outgoing
	// connection takes it, and with ClickHouse, ZooKeeper and the other test
	// packages connecting meanwhile, a service then failed to bind (seen in
	// CI). 20000-27999 also stays clear of the fixed ports of make run and
	// make test (8080-9103, 18080-19440, 28123 and up).
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

func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	args := []string{"build", "-o", bin + "/"}
	for _, s := range services {
		args = append(args, "../"+s)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newStack(t *testing.T, apiKey string) *stack {
	t.Helper()
	database, _ := chtest.Database(t)
	_, broker := kafkatest.Start(t)
	dir := t.TempDir()
	clients := fmt.Sprintf(`clients:
  - id: shop
    domains: [shop.example]
    write_keys: [wk_shop]
    api_key_hashes: [%q]
    respect_dnt: true
  - id: other
    api_key_hashes: [%q]
`, registry.HashAPIKey(apiKey), registry.HashAPIKey(apiKey+"-other"))
	if err := os.WriteFile(filepath.Join(dir, "clients.yaml"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{
		t: t, bin: buildBinaries(t), dir: dir,
		env: append(os.Environ(),
			"ALUMINI_KAFKA_BROKERS="+broker,
			"ALUMINI_KAFKA_PARTITIONS=3",
			"ALUMINI_CLIENTS_FILE="+filepath.Join(dir, "clients.yaml"),
			"ALUMINI_CLICKHOUSE_ADDR="+chtest.Addr(),
			"ALUMINI_CLICKHOUSE_DATABASE="+database,
			"ALUMINI_VISITOR_SECRET=e2e-secret-e2e-secret-e2e-secret-e2e",
			"ALUMINI_BATCH_MAX_WAIT=200ms",
		),
		ports: map[string]string{"collector": freeAddr(t), "reporter": freeAddr(t)},
		admin: map[string]string{},
		procs: map[string]*exec.Cmd{},
	}
	for _, name := range services {
		s.admin[name] = freeAddr(t)
	}
	t.Cleanup(s.stopAll)
	for _, name := range services {
		s.start(name)
	}
	return s
}

func (s *stack) start(name string) {
	s.t.Helper()
	args := []string{"-admin-addr", s.admin[name]}
	if addr, ok := s.ports[name]; ok {
		args = append(args, "-listen-addr", addr)
	}
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = s.env
	logFile, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", name, err)
	}
	s.procs[name] = cmd
	s.waitReady(name)
}

func (s *stack) waitReady(name string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.admin[name] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s not ready within 30s; log:\n%s", name, s.log(name))
}

func (s *stack) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log")) // only for a failure message.
	return string(b)
}

// stop sends SIGTERM and checks the service shut down cleanly.
func (s *stack) stop(name string) {
	s.t.Helper()
	cmd := s.procs[name]
	if cmd == nil {
		return
	}
	delete(s.procs, name)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Errorf("signalling %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("%s exited with %v after SIGTERM; want a clean exit. Log:\n%s", name, err, s.log(name))
		}
	case <-time.After(40 * time.Second):
		if err := cmd.Process.Kill(); err != nil {
			s.t.Logf("killing %s: %v", name, err)
		}
		s.t.Errorf("%s did not stop within 40s of SIGTERM", name)
	}
}

func (s *stack) stopAll() {
	for i := len(services) - 1; i >= 0; i-- {
		s.stop(services[i])
	}
}

func (s *stack) post(body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.ports["collector"]+"/api/event", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// A browser's user agent: the enricher flags Go-http-client as a bot,
	// and reports leave bots out.
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

type aggregate struct {
	ClientID string `json:"client_id"`
	Results  struct {
		Pageviews int64 `json:"pageviews"`
		Visitors  int64 `json:"visitors"`
		Events    int64 `json:"events"`
	} `json:"results"`
}

func (s *stack) report(key, query string) (int, aggregate, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.ports["reporter"]+"/api/v1/stats/aggregate"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	var agg aggregate
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &agg); err != nil {
			s.t.Fatalf("report %s: %v", b, err)
		}
	}
	return resp.StatusCode, agg, string(b)
}

// waitForCounts polls the reporter until it shows want or the time is up.
func (s *stack) waitForCounts(key string, pageviews, visitors, events int64, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		status, agg, body := s.report(key, "")
		last = fmt.Sprintf("%d %s", status, body)
		if status == 200 && agg.Results.Pageviews == pageviews && agg.Results.Visitors == visitors && agg.Results.Events == events {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("reporter did not show pageviews=%d visitors=%d events=%d within %v; last answer: %s\nsinker log:\n%s",
		pageviews, visitors, events, within, last, s.log("sinker"))
}

func TestEventsFlowFromCollectorToReporter(t *testing.T) {
	const key = "alm_e2e_test_key_0123456789abcdef"
	s := newStack(t, key)

	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"client_id":"shop","url":"https://shop.example/","event_id":"pv-1"}`, 202},
		{`{"client_id":"shop","url":"https://shop.example/pricing","event_id":"pv-2","referrer":"https://news.example/"}`, 202},
		{`{"write_key":"wk_shop","type":"custom","name":"signup","event_id":"ev-1"}`, 202},
		{`{"client_id":"other","url":"https://other.example/","event_id":"pv-other"}`, 202},
		{`{"client_id":"nobody","url":"https://shop.example/"}`, 400},
		{`{"client_id":"shop","url":`, 400},
		{`{"client_id":"shop","url":"https://shop.example/","dnt":true}`, 204},
	} {
		if status, body := s.post(tc.body); status != tc.status {
			t.Fatalf("POST %s = %d %s; want %d", tc.body, status, body, tc.status)
		}
	}
	// One visitor (same IP and user agent): 2 page views, 3 events in all;
	// the other client's page view and the refused ones are not counted.
	s.waitForCounts(key, 2, 1, 3, 15*time.Second)

	if status, _, body := s.report("alm_wrong", ""); status != 401 || !strings.Contains(body, "error") {
		t.Errorf("report with a wrong key = %d %s; want 401 with an error message", status, body)
	}
	if status, _, body := s.report("wk_shop", ""); status != 401 {
		t.Errorf("report with the write key = %d %s; want 401: a write key never grants read access", status, body)
	}
	if status, _, body := s.report(key, "?client_id=other"); status != 401 {
		t.Errorf("shop's key asking for client other = %d %s; want 401", status, body)
	}

	// Restart the consuming services and send a retry of an accepted event:
	// it is still counted once.
	s.stop("enricher")
	s.stop("sinker")
	s.start("sinker")
	s.start("enricher")
	if status, body := s.post(`{"client_id":"shop","url":"https://shop.example/pricing","event_id":"pv-2","referrer":"https://news.example/"}`); status != 202 {
		t.Fatalf("retry POST = %d %s; want 202", status, body)
	}
	if status, body := s.post(`{"client_id":"shop","url":"https://shop.example/about","event_id":"pv-3"}`); status != 202 {
		t.Fatalf("POST = %d %s; want 202", status, body)
	}
	s.waitForCounts(key, 3, 1, 4, 15*time.Second)
	var metrics bytes.Buffer
	resp, err := http.Get("http://" + s.admin["collector"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := metrics.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`alumini_collector_events_dropped_total{reason="dnt"} 1`, `alumini_collector_events_dropped_total{reason="unknown_client"} 1`, "alumini_collector_events_accepted_total 6"} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("collector /metrics lacks %q", want)
		}
	}
}
