// Command bench is the collector's load-benchmark kit: an in-process Kafka
// broker to produce to, the no-op HTTP servers that give the ceilings (and,
// with -work, a server as busy per request as the collector, the latency
// control), a fixed-rate load generator for latency at a chosen rate, and
// the collector's producer driven alone at a fixed rate (publish). run.sh
// drives them together with wrk; see docs/bench/collector.md.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: bench kafka|noop|load|publish [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "kafka":
		addr := fs.String("addr", "127.0.0.1:19092", "listen address")
		dataDir := fs.String("data-dir", "", "keep the log in files under this folder; empty: in memory")
		parse(fs)
		runKafka(*addr, *dataDir)
	case "noop":
		addr := fs.String("addr", "127.0.0.1:18090", "listen address")
		impl := fs.String("impl", "fasthttp", "fasthttp or nethttp")
		work := fs.Duration("work", 0, "CPU time to spend per request before answering (fasthttp only): a server as busy per request as the collector, without Kafka, for the latency control of fixed.sh")
		parse(fs)
		runNoop(*addr, *impl, *work)
	case "load":
		url := fs.String("url", "", "endpoint to POST to")
		bodyFile := fs.String("body", "", "file holding the request body")
		rate := fs.Int("rate", 1000, "requests per second, sent on schedule whatever the answers take (open loop)")
		dur := fs.Duration("duration", 10*time.Second, "how long to send")
		conns := fs.Int("conns", 64, "most connections open at once")
		warmup := fs.Duration("warmup", 2*time.Second, "how long to send at the rate before measuring: new connections, buffers and heap growing are not the steady state")
		visitors := fs.Int("visitors", 1, "distinct User-Agents to cycle through: the collector partitions by visitor (IP + User-Agent), so 1 puts every event on one partition")
		latencies := fs.String("latencies", "", "also write each measured request to this file: when it was due (µs after measuring began) and its latency (µs), one per line after a '# <start, Unix µs>' line; slow requests that come in bursts point at a pause (GODEBUG=gctrace=1 on the server dates its collections)")
		parse(fs)
		runLoad(*url, *bodyFile, *rate, *warmup, *dur, *conns, max(*visitors, 1), *latencies)
	case "publish":
		broker := fs.String("broker", "127.0.0.1:19092", "Kafka broker to produce to (topic bench.publish is created)")
		rate := fs.Int("rate", 2500, "Publish calls per second, on schedule whatever the answers take")
		batch := fs.Int("batch", 100, "events per call")
		conns := fs.Int("conns", 256, "goroutines making the calls, as the HTTP benchmark's connections")
		work := fs.Duration("work", 0, "CPU time each call spends before Publish, as a request's parsing would")
		warmup := fs.Duration("warmup", 2*time.Second, "how long to call at the rate before measuring")
		dur := fs.Duration("duration", 10*time.Second, "how long to measure")
		parse(fs)
		runPublish(*broker, *rate, *batch, *conns, *work, *warmup, *dur)
	default:
		fail("unknown command %q: want kafka, noop, load or publish", os.Args[1])
	}
}

func parse(fs *flag.FlagSet) {
	if err := fs.Parse(os.Args[2:]); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

// runKafka serves a kfake broker, the same embedded broker the tests and
// deploy/devkafka use, until a signal. In memory, kfake keeps each log in
// one byte slice that it doubles and copies as it grows: under a global
// lock, so every produce waits while a log of hundreds of MiB is copied.
// With dataDir the log goes to files (the page cache), as a real broker's.
func runKafka(addr, dataDir string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fail("addr: %v", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		fail("addr: %v", err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(p),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		})}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fail("kfake: %v", err)
	}
	fmt.Println("kafka listening on", c.ListenAddrs()[0])
	waitSignal()
	c.Close()
}

// runNoop answers every request with 204 and nothing else: the ceiling of
// the HTTP stack and the kernel on this machine.
func runNoop(addr, impl string, work time.Duration) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail("listen: %v", err)
	}
	switch impl {
	case "fasthttp":
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			spin(work)
			ctx.SetStatusCode(fasthttp.StatusNoContent)
		}, NoDefaultDate: true}
		go func() { _ = srv.Serve(ln) }() // ends with the process.
	case "nethttp":
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
		go func() { _ = srv.Serve(ln) }() // ends with the process.
	default:
		fail("impl %q: want fasthttp or nethttp", impl)
	}
	fmt.Println("noop", impl, "listening on", ln.Addr())
	waitSignal()
}

// spin keeps the process busy for d of its CPU time (not wall time: time
// another process has the core does not count, as it would not for real
// work; with GOMAXPROCS=1 the process's CPU is this request's).
func spin(d time.Duration) {
	if d <= 0 {
		return
	}
	var ts unix.Timespec
	now := func() time.Duration {
		_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	for end := now() + d; now() < end; {
	}
}

// runLoad sends requests on a fixed schedule and prints the latency
// percentiles of the answers. It is open loop in wrk2's way: each of the
// conns connections has its own schedule (one request every
// conns/rate), and a request that is late because its connection was
// still waiting for the previous answer counts its latency from when it
// was due, so a slow server cannot hide its queueing by slowing the
// sender down. Requests are written as prepared bytes on plain
// connections: the generator shares a core with the broker, and a
// heavier HTTP client's own pauses showed up as the server's latency
// (p99 6.5 ms against a server that does nothing, at 20,000 req/s).
func runLoad(url, bodyFile string, rate int, warmup, dur time.Duration, conns, visitors int, latencyFile string) {
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		fail("%v", err)
	}
	host, path, ok := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	if !ok || strings.HasPrefix(url, "https://") {
		fail("url %q: want http://host:port/path", url)
	}
	requests := make([][]byte, visitors)
	for v := range requests {
		ua := "alumini-bench"
		if visitors > 1 {
			ua = fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.%d.0 Safari/537.36", v)
		}
		requests[v] = fmt.Appendf(nil, "POST /%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			path, host, ua, len(body), body)
	}
	conns = max(1, min(conns, rate))
	interval := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	perConn := int((warmup + dur) / interval)
	type result struct {
		latencies []time.Duration
		dues      []time.Duration // of each latency, from measureFrom
		lags      []time.Duration
		statuses  map[int]int
		errs      int
	}
	results := make([]result, conns)
	startAt := time.Now().Add(50 * time.Millisecond) // connections open first
	measureFrom := startAt.Add(warmup)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			r := &results[c]
			r.statuses = map[int]int{}
			r.latencies = make([]time.Duration, 0, perConn)
			conn, err := net.Dial("tcp", host)
			if err != nil {
				r.errs = perConn
				return
			}
			defer conn.Close()
			rd := bufio.NewReader(conn)
			// Connections start spread over one interval, so that the
			// requests of all of them are evenly spaced.
			first := startAt.Add(interval * time.Duration(c) / time.Duration(conns))
			for i := range perConn {
				due := first.Add(time.Duration(i) * interval)
				wait := time.Until(due)
				free := wait > 0 // the previous answer came before this request was due
				if free {
					time.Sleep(wait)
				}
				sent := time.Now()
				if _, err := conn.Write(requests[(i*conns+c)%visitors]); err != nil {
					r.errs++ // and the rest of this connection's schedule is not sent
					return
				}
				status, err := readResponse(rd)
				if err != nil {
					r.errs++
					return
				}
				if due.Before(measureFrom) {
					continue
				}
				r.latencies = append(r.latencies, time.Since(due))
				r.dues = append(r.dues, due.Sub(measureFrom))
				if free {
					r.lags = append(r.lags, sent.Sub(due))
				}
				r.statuses[status]++
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	var latencies, lags []time.Duration
	statuses := map[int]int{}
	errs := 0
	for _, r := range results {
		latencies = append(latencies, r.latencies...)
		lags = append(lags, r.lags...)
		for k, v := range r.statuses {
			statuses[k] += v
		}
		errs += r.errs
	}
	if latencyFile != "" {
		b := fmt.Appendf(nil, "# %d\n", measureFrom.UnixMicro())
		for _, r := range results {
			for i := range r.latencies {
				b = fmt.Appendf(b, "%d %d\n", r.dues[i].Microseconds(), r.latencies[i].Microseconds())
			}
		}
		if err := os.WriteFile(latencyFile, b, 0o644); err != nil {
			fail("%v", err)
		}
	}
	slices.Sort(latencies)
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return percentile(latencies, p) }
	fmt.Printf("measured=%d errors=%d rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p99.9_ms=%.3f max_ms=%.3f ", len(latencies)+errs, errs,
		float64(len(latencies))/elapsed.Seconds(), ms(pct(0.50)), ms(pct(0.90)), ms(pct(0.99)), ms(pct(0.999)), ms(pct(1)))
	// The generator's own lateness: requests whose connection was free when
	// they were due but that were written late, because the generator (which
	// shares its core with the broker) did not get to run. It is part of the
	// latency above but not the server's doing.
	fmt.Printf("send_lag_p99_ms=%.3f send_lag_p99.9_ms=%.3f statuses=", ms(percentile(lags, 0.99)), ms(percentile(lags, 0.999)))
	for _, k := range slices.Sorted(maps.Keys(statuses)) {
		fmt.Printf("%d:%d,", k, statuses[k])
	}
	fmt.Println()
}

// readResponse reads one HTTP/1.1 response with a Content-Length body (all
// the collector and the no-op servers send) and returns its status.
func readResponse(rd *bufio.Reader) (int, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := 0
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if _, err := rd.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// percentile of sorted durations (0 for none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
