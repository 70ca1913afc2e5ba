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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/registry"
)

// services in the order they are started; stopped in reverse.
var services = []string{"reporter", "sinker", "enricher", "collector"}

type stack struct {
	t         *testing.T
	db        driver.Conn // the services' ClickHouse database
	bin, dir  string
	instances []string // in start order; stopped in reverse
	env       []string
	ports     map[string]string // instance -> public address
	admin     map[string]string // instance -> admin address
	args      map[string][]string
	procs     map[string]*exec.Cmd
	exited    map[string]chan error // receives the process's exit, once
}

// binary is the service an instance runs: "collector-b" runs the
// collector, and so does "collector/b", which is also its Kafka instance id.
func binary(instance string) string {
	if i := strings.IndexAny(instance, "-/"); i >= 0 {
		return instance[:i]
	}
	return instance
}

// handedOut holds the addresses freeAddr returned.
var handedOut sync.Map

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
		// Tests run in parallel, and a port handed out is bound later (or
		// again, by a broker restarted): never hand it out twice.
		if _, taken := handedOut.LoadOrStore(addr, true); taken {
			continue
		}
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

// built holds the binaries, built once for all the stacks of a run.
var built struct {
	once sync.Once
	dir  string
	err  error
}

func buildBinaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "alumini-e2e-bin-"); built.err != nil {
			return
		}
		args := []string{"build", "-o", built.dir + "/"}
		for _, s := range services {
			args = append(args, "../"+s)
		}
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func newStack(t *testing.T, apiKey string) *stack {
	t.Helper()
	s, _ := newStackWith(t, testClients(apiKey))
	return s
}

// testClients is the registry of the tests' clients, with apiKey (and
// apiKey-other, apiKey-cookies) as their API keys.
func testClients(apiKey string) string {
	return fmt.Sprintf(`clients:
  - id: shop
    domains: [shop.example]
    write_keys: [wk_shop]
    api_key_hashes: [%q]
    respect_dnt: true
  - id: other
    api_key_hashes: [%q]
  - id: cookies
    domains: [cookies.example]
    cookie_mode: cookie
    api_key_hashes: [%q]
`, registry.HashAPIKey(apiKey), registry.HashAPIKey(apiKey+"-other"), registry.HashAPIKey(apiKey+"-cookies"))
}

// newStackWith starts the services on a registry of clients, with env
// added to their environment, and returns the stack and its ClickHouse
// connection.
func newStackWith(t *testing.T, clients string, env ...string) (*stack, driver.Conn) {
	t.Helper()
	_, broker := kafkatest.Start(t)
	s := prepareStack(t, clients, broker, services, nil, env...)
	for _, name := range services {
		s.start(name)
	}
	return s, s.db
}

// startStack runs the instances (a service's name, or its name, a dash and
// a letter for a second one) in the order given, each with its args, on
// a fresh database and broker.
func startStack(t *testing.T, clients string, instances []string, args map[string][]string, broker ...kfake.Opt) *stack {
	t.Helper()
	_, brokerAddr := kafkatest.Start(t, broker...)
	s := prepareStack(t, clients, brokerAddr, instances, args)
	for _, name := range instances {
		s.start(name)
	}
	return s
}

// prepareStack builds the services and writes their configuration (a
// registry of clients, brokers, each instance's args, env added to their
// environment), without starting anything.
func prepareStack(t *testing.T, clients, brokers string, instances []string, args map[string][]string, env ...string) *stack {
	t.Helper()
	database, conn := chtest.Database(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clients.yaml"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{
		t: t, db: conn, bin: buildBinaries(t), dir: dir, instances: instances,
		env: append(os.Environ(),
			"ALUMINI_KAFKA_BROKERS="+brokers,
			"ALUMINI_KAFKA_PARTITIONS=3",
			"ALUMINI_CLIENTS_FILE="+filepath.Join(dir, "clients.yaml"),
			"ALUMINI_CLICKHOUSE_ADDR="+chtest.Addr(),
			"ALUMINI_CLICKHOUSE_DATABASE="+database,
			"ALUMINI_VISITOR_SECRET=e2e-secret-e2e-secret-e2e-secret-e2e",
			"ALUMINI_COOKIE_SECRET=e2e-cookie-e2e-cookie-e2e-cookie-e2e",
			"ALUMINI_BATCH_MAX_WAIT=200ms",
			// Tests send X-Forwarded-For to come from other addresses.
			"ALUMINI_TRUSTED_PROXIES=127.0.0.1/32",
		),
		ports:  map[string]string{},
		admin:  map[string]string{},
		args:   args,
		procs:  map[string]*exec.Cmd{},
		exited: map[string]chan error{},
	}
	for _, name := range instances {
		s.admin[name] = freeAddr(t)
		if b := binary(name); b == "collector" || b == "reporter" {
			s.ports[name] = freeAddr(t)
		}
	}
	s.env = append(s.env, env...)
	t.Cleanup(s.stopAll)
	return s
}

func (s *stack) start(name string) {
	s.t.Helper()
	s.launch(name)
	s.waitReady(name)
}

// launch starts a service without waiting for it to be ready. A name
// "service/instance" is a further instance of service, with that
// -kafka-instance-id.
func (s *stack) launch(name string) {
	s.t.Helper()
	if s.admin[name] == "" {
		s.admin[name] = freeAddr(s.t)
	}
	args := []string{"-admin-addr", s.admin[name]}
	if addr, ok := s.ports[name]; ok {
		args = append(args, "-listen-addr", addr)
	}
	if _, instance, found := strings.Cut(name, "/"); found {
		args = append(args, "-kafka-instance-id", instance)
	}
	args = append(args, s.args[name]...)
	cmd := exec.Command(filepath.Join(s.bin, binary(name)), args...)
	cmd.Env = s.env
	// Appended to: a service restarted keeps the log of its earlier runs.
	logFile, err := os.OpenFile(s.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", name, err)
	}
	s.procs[name] = cmd
	exited := make(chan error, 1)
	s.exited[name] = exited
	go func() { exited <- cmd.Wait() }()
}

func (s *stack) waitReady(name string) {
	s.t.Helper()
	if eventually.Within(30*time.Second, func() bool {
		resp, err := http.Get("http://" + s.admin[name] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		return
	}
	s.t.Fatalf("%s not ready within 30s; log:\n%s", name, s.log(name))
}

func (s *stack) logPath(name string) string {
	return filepath.Join(s.dir, strings.ReplaceAll(name, "/", "-")+".log")
}

func (s *stack) log(name string) string {
	b, _ := os.ReadFile(s.logPath(name)) // only for a failure message.
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
	done := s.exited[name]
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

// stopAll stops the instances in the reverse of their start order.
func (s *stack) stopAll() {
	for i := len(s.instances) - 1; i >= 0; i-- {
		s.stop(s.instances[i])
	}
}

func (s *stack) post(body string) (int, string) {
	s.t.Helper()
	status, answer, _ := s.postWith(body, nil)
	return status, answer
}

// postWith posts body with extra headers and returns the status, the
// answer and the cookies set.
func (s *stack) postWith(body string, headers map[string]string) (int, string, []*http.Cookie) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.ports["collector"]+"/api/event", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	// A browser's user agent: the enricher flags Go-http-client as a bot,
	// and reports leave bots out.
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Cookies()
}

type aggregate struct {
	ClientID string `json:"client_id"`
	Results  struct {
		Pageviews int64 `json:"pageviews"`
		Visitors  int64 `json:"visitors"`
		Events    int64 `json:"events"`
	} `json:"results"`
}

// get asks the reporter for target (path and query) with an API key.
func (s *stack) get(key, target string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.ports["reporter"]+target, nil)
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
	return resp.StatusCode, b
}

func (s *stack) report(key, query string) (int, aggregate, string) {
	s.t.Helper()
	status, b := s.get(key, "/api/v1/stats/aggregate"+query)
	var agg aggregate
	if status == http.StatusOK {
		if err := json.Unmarshal(b, &agg); err != nil {
			s.t.Fatalf("report %s: %v", b, err)
		}
	}
	return status, agg, string(b)
}

// waitForCounts polls the reporter until it shows want or the time is up.
func (s *stack) waitForCounts(key string, pageviews, visitors, events int64, within time.Duration) {
	s.t.Helper()
	var last string
	if eventually.Within(within, func() bool {
		status, agg, body := s.report(key, "")
		last = fmt.Sprintf("%d %s", status, body)
		return status == 200 && agg.Results.Pageviews == pageviews && agg.Results.Visitors == visitors && agg.Results.Events == events
	}) {
		return
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
