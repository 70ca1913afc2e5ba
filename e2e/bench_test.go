package e2e

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aluminiapp/pipeline/e2e/internal/procstat"
	"github.com/aluminiapp/pipeline/e2e/internal/traffic"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
)

// The end-to-end benchmark's settings. Their defaults are the small load
// `make test` runs; `make bench-e2e` passes a real one (BENCHMARKS.md).
var (
	benchRate       = flag.Float64("rate", 300, "end-to-end benchmark: events/s offered to the collectors (open loop)")
	benchFor        = flag.Duration("for", 3*time.Second, "end-to-end benchmark: how long the load is offered")
	benchBatch      = flag.Int("batch", 10, "end-to-end benchmark: events per request; 1 posts single events to /api/event")
	benchInstances  = flag.String("instances", "collector=1,enricher=1,sinker=1", "end-to-end benchmark: instances of each service")
	benchCPUs       = flag.String("cpus", "", "end-to-end benchmark: cores of each stage, as taskset lists: collector=0,enricher=1,sinker=1,broker=0,clickhouse=0-1,load=1 (empty: no pinning; clickhouse pins the server at CLICKHOUSE_ADDR, shared with others)")
	benchPartitions = flag.Int("partitions", 6, "end-to-end benchmark: partitions of each topic")
	benchConns      = flag.Int("conns", 32, "end-to-end benchmark: connections the load generator sends on")
	benchVisitors   = flag.Int("visitors", 50000, "end-to-end benchmark: returning visitors")
	benchUnseen     = flag.Float64("unseen", 0.02, "end-to-end benchmark: share of requests from a new visitor with a user agent never sent before")
	benchMarkers    = flag.Float64("markers", 10, "end-to-end benchmark: marker events per second, whose freshness is measured")
	benchDrain      = flag.Duration("drain", 60*time.Second, "end-to-end benchmark: how long to wait for more events to be stored once none were for a while")
)

// The stages whose CPU the benchmark reports, in pipeline order.
var benchStages = []string{"load", "collector", "broker", "enricher", "sinker", "clickhouse"}

// TestPipelineBenchmark is the end-to-end benchmark (`make bench-e2e`): a
// broker in its own process, the services as built binaries, ClickHouse,
// realistic traffic offered at a fixed rate, and a report of what was
// stored, how fresh, at what CPU cost per stage. With its default small load
// it is the check `make test` runs: every event the collector answered 2xx
// for is in ClickHouse exactly once. No figure is asserted.
func TestPipelineBenchmark(t *testing.T) {
	counts, err := parseInstances(*benchInstances)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := parseCPUs(*benchCPUs)
	if err != nil {
		t.Fatal(err)
	}
	corpus, err := traffic.LoadCorpus("../enricher/testdata/intoli-user-agents/user-agents.json", "../enricher/testdata/referer-parser/referer-tests.json")
	if err != nil {
		t.Fatal(err)
	}

	b := &benchRun{t: t, pins: pins, pids: map[string]int{}, counts: counts}
	b.startBroker()
	b.startServices(counts)
	b.waitForGroups(counts)
	b.pinAndFindPIDs()

	res := b.offer(corpus)
	b.report(res)

	if res.rejected > 0 {
		t.Errorf("%d requests refused with 4xx: the generator's traffic must be valid and within the limits", res.rejected)
	}
	if res.acceptedEvents == 0 {
		t.Fatalf("no event accepted; load generator: %d requests, errors: %v", res.requests, res.firstErr)
	}
	if res.missing > 0 || res.finalRows != res.distinct || res.unknown > 0 {
		t.Errorf("every 2xx once in ClickHouse: %d accepted events missing, %d stored ids never sent, %d rows under FINAL for %d distinct ids; want 0, 0 and one row per id",
			res.missing, res.unknown, res.finalRows, res.distinct)
	}
}

func parseInstances(s string) (map[string]int, error) {
	counts := map[string]int{"collector": 1, "enricher": 1, "sinker": 1}
	for part := range strings.SplitSeq(s, ",") {
		name, n, ok := strings.Cut(part, "=")
		count, err := strconv.Atoi(n)
		if _, known := counts[name]; !ok || !known || err != nil || count < 1 {
			return nil, fmt.Errorf("-instances %q: %q; want collector=N, enricher=N or sinker=N with N >= 1", s, part)
		}
		counts[name] = count
	}
	return counts, nil
}

// parseCPUs reads -cpus: stage=list pairs, where a list may hold commas
// itself ("enricher=1,3,sinker=2" gives the enricher cores 1 and 3).
func parseCPUs(s string) (map[string][]int, error) {
	pins := map[string][]int{}
	if s == "" {
		return pins, nil
	}
	var order []string
	lists := map[string][]string{}
	for part := range strings.SplitSeq(s, ",") {
		if name, list, ok := strings.Cut(part, "="); ok {
			if !slices.Contains(benchStages, name) {
				return nil, fmt.Errorf("-cpus %q: stage %q; want one of %v", s, name, benchStages)
			}
			order = append(order, name)
			part = list
		} else if len(order) == 0 {
			return nil, fmt.Errorf("-cpus %q: want stage=cores first", s)
		}
		stage := order[len(order)-1]
		lists[stage] = append(lists[stage], part)
	}
	for stage, parts := range lists {
		cpus, err := procstat.ParseCPUList(strings.Join(parts, ","))
		if err != nil {
			return nil, fmt.Errorf("-cpus %s: %w", stage, err)
		}
		pins[stage] = cpus
	}
	return pins, nil
}

type benchRun struct {
	t          *testing.T
	s          *stack
	broker     string
	pins       map[string][]int
	counts     map[string]int // instances of each service
	pids       map[string]int // process -> pid; "load" is this process
	stageOf    map[string]string
	instances  []string
	collectors []string
	adm        *kadm.Client
}

// startBroker runs deploy/devkafka (kfake) in a process of its own, so its
// CPU is measured and it can be pinned apart from the services.
func (b *benchRun) startBroker() {
	t := b.t
	dir := t.TempDir()
	bin := filepath.Join(dir, "devkafka")
	if out, err := exec.Command("go", "build", "-o", bin, "../deploy/devkafka").CombinedOutput(); err != nil {
		t.Fatalf("building devkafka: %v\n%s", err, out)
	}
	b.broker = freeAddr(t)
	cmd := exec.Command(bin, "-addr", b.broker, "-data-dir", filepath.Join(dir, "data"))
	logFile, err := os.Create(filepath.Join(dir, "devkafka.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting devkafka: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Registered before the services' cleanup, so it runs after they stopped.
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("stopping devkafka: %v", err)
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("devkafka did not stop within 30s of SIGTERM")
			if err := cmd.Process.Kill(); err != nil {
				t.Logf("killing devkafka: %v", err)
			}
		}
	})
	eventually.True(t, 30*time.Second, "devkafka to listen", func() bool {
		c, err := net.Dial("tcp", b.broker)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	b.pids["broker"] = cmd.Process.Pid
}

// benchClients: the benchmark's client is a big site, above the
// collector's default per-client rate limit.
const benchClients = `clients:
  - id: bench
    rate_limit_per_second: 100000000
    rate_limit_burst: 1000000
  - id: marker
`

// startServices starts the sinkers (they apply the migrations), the
// enrichers and the collectors, each stage's instances numbered from 1.
func (b *benchRun) startServices(counts map[string]int) {
	b.stageOf = map[string]string{}
	for _, stage := range []string{"sinker", "enricher", "collector"} {
		for i := 1; i <= counts[stage]; i++ {
			// "enricher/2" runs with -kafka-instance-id 2; collectors have
			// no consumer group, and a dash only tells them apart.
			name := fmt.Sprintf("%s/%d", stage, i)
			if stage == "collector" {
				name = fmt.Sprintf("collector-%d", i)
				b.collectors = append(b.collectors, name)
			}
			b.instances = append(b.instances, name)
			b.stageOf[name] = stage
		}
	}
	b.s = prepareStack(b.t, benchClients, b.broker, b.instances, nil, "ALUMINI_KAFKA_PARTITIONS="+strconv.Itoa(*benchPartitions))
	// The services' own batch waits, not the shorter one of the tests: the
	// sinker's is most of the freshness a user sees.
	b.s.env = slices.DeleteFunc(b.s.env, func(kv string) bool { return strings.HasPrefix(kv, "ALUMINI_BATCH_MAX_WAIT=") })
	for _, name := range b.instances {
		b.s.start(name)
		b.pids[name] = b.s.procs[name].Process.Pid
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(cl.Close)
	b.adm = kadm.NewClient(cl)
}

// waitForGroups waits until every consumer instance has joined its group
// and every partition is assigned, so the run measures work, not joins.
func (b *benchRun) waitForGroups(counts map[string]int) {
	for _, stage := range []string{"enricher", "sinker"} {
		group := "alumini-" + stage
		var last string
		if !eventually.Within(60*time.Second, func() bool {
			parts := b.assignment(group)
			last = fmt.Sprint(parts)
			total := 0
			for _, n := range parts {
				total += n
			}
			return len(parts) == counts[stage] && total == *benchPartitions
		}) {
			b.t.Fatalf("group %s: partitions per member %s; want %d members sharing %d partitions", group, last, counts[stage], *benchPartitions)
		}
	}
}

// assignment is how many partitions each member of group holds, by the
// member's Kafka client id (alumini-enricher/2).
func (b *benchRun) assignment(group string) map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := b.adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil
	}
	parts := map[string]int{}
	for _, m := range groups[group].Members {
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, topic := range a.Topics {
				parts[m.ClientID] += len(topic.Partitions)
			}
		}
	}
	return parts
}

// pinAndFindPIDs finds ClickHouse's process (for its CPU time) and pins
// each stage's processes to their cores.
func (b *benchRun) pinAndFindPIDs() {
	t := b.t
	b.pids["load"] = os.Getpid()
	_, port, err := net.SplitHostPort(chtest.Addr())
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil {
			b.pids["clickhouse"], err = procstat.Listener(n)
		}
	}
	if err != nil {
		t.Logf("ClickHouse's CPU is not measured: %v", err)
		delete(b.pids, "clickhouse")
	}
	for proc, pid := range b.pids {
		cpus := b.pins[b.stage(proc)]
		if cpus == nil {
			continue
		}
		if err := procstat.Pin(pid, cpus); err != nil {
			t.Fatal(err)
		}
	}
}

// stage is the stage a process belongs to: enricher/2 to the enricher.
func (b *benchRun) stage(proc string) string {
	if s, ok := b.stageOf[proc]; ok {
		return s
	}
	return proc
}

// cpu is each process's CPU time now, and under "machine" the whole
// machine's.
func (b *benchRun) cpu() map[string]time.Duration {
	out := map[string]time.Duration{}
	if d, err := procstat.MachineBusy(); err == nil {
		out["machine"] = d
	}
	for proc, pid := range b.pids {
		if d, err := procstat.CPUTime(pid); err == nil {
			out[proc] = d
		}
	}
	return out
}

// waits is how long each process's threads have waited for a core.
func (b *benchRun) waits() map[string]time.Duration {
	out := map[string]time.Duration{}
	for proc, pid := range b.pids {
		if d, err := procstat.RunQueueWait(pid); err == nil {
			out[proc] = d
		}
	}
	return out
}

// acceptedSet records which events were answered 2xx, by sequence number.
type acceptedSet struct{ words []atomic.Uint64 }

func newAcceptedSet(n int) *acceptedSet { return &acceptedSet{words: make([]atomic.Uint64, n/64+1)} }

// holds says whether seq is within the set's range.
func (a *acceptedSet) holds(seq uint64) bool { return seq < uint64(len(a.words))*64 }
func (a *acceptedSet) add(seq uint64)        { a.words[seq/64].Or(1 << (seq % 64)) }
func (a *acceptedSet) has(seq uint64) bool   { return a.words[seq/64].Load()&(1<<(seq%64)) != 0 }

// sample is the pipeline's state at one moment of the run.
type sample struct {
	at                     time.Duration // since the load started
	sent, accepted, stored int64
	rawLag, enrichedLag    int64
	cpu                    map[string]time.Duration
}

type marker struct {
	accepted, stored time.Time
}

type benchResult struct {
	start, sendEnd, storedEnd   time.Time
	requests, rejected, failed  int64
	firstErr                    atomic.Value
	sentEvents, acceptedEvents  int64
	latencies                   []time.Duration // per request, from when it was due
	samples                     []sample
	cpuStart, cpuEnd            map[string]time.Duration
	waitStart, waitEnd          map[string]time.Duration // for a core, runnable
	idleCPU                     map[string]time.Duration // over idleFor before the load
	idleFor                     time.Duration
	markers                     []marker
	stored, distinct, finalRows int64
	missing, unknown, doubled   int64
	partitions                  map[string]map[string]int // group -> member -> partitions
	counters                    map[string][2]float64     // instance -> its throughput counter at start and end
	gomaxprocs                  map[string]int
}
