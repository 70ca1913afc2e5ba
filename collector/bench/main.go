// Command bench is the collector's load-benchmark kit: an in-process Kafka
// broker to produce to, the no-op HTTP servers that give the ceilings, and
// a fixed-rate load generator for latency at a chosen rate. run.sh drives
// them together with wrk; see docs/bench/collector.md.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: bench kafka|noop|load [flags]")
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
		parse(fs)
		runNoop(*addr, *impl)
	case "load":
		url := fs.String("url", "", "endpoint to POST to")
		bodyFile := fs.String("body", "", "file holding the request body")
		rate := fs.Int("rate", 1000, "requests per second, sent on schedule whatever the answers take (open loop)")
		dur := fs.Duration("duration", 10*time.Second, "how long to send")
		conns := fs.Int("conns", 64, "most connections open at once")
		visitors := fs.Int("visitors", 1, "distinct User-Agents to cycle through: the collector partitions by visitor (IP + User-Agent), so 1 puts every event on one partition")
		parse(fs)
		runLoad(*url, *bodyFile, *rate, *dur, *conns, max(*visitors, 1))
	default:
		fail("unknown command %q: want kafka, noop or load", os.Args[1])
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
func runNoop(addr, impl string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail("listen: %v", err)
	}
	switch impl {
	case "fasthttp":
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusNoContent) }, NoDefaultDate: true}
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

// runLoad sends requests on a fixed schedule (open loop, so a slow answer
// does not slow the sender down and hide latency) and prints the latency
// percentiles of the answers.
func runLoad(url, bodyFile string, rate int, dur time.Duration, conns, visitors int) {
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		fail("%v", err)
	}
	client := &fasthttp.Client{MaxConnsPerHost: conns, MaxIdleConnDuration: time.Minute}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		statuses  sync.Map
		wg        sync.WaitGroup
	)
	sem := make(chan struct{}, conns)
	interval := time.Second / time.Duration(rate)
	startAt := time.Now()
	n := int(dur / interval)
	for i := 0; i < n; i++ {
		due := startAt.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			errs.Add(1) // every connection busy: an error, never a wait.
			continue
		}
		wg.Add(1)
		visitor := i % visitors
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			if visitors > 1 {
				req.Header.SetUserAgent(fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.%d.0 Safari/537.36", visitor))
			}
			req.SetBody(body)
			// Latency from when the request was due, so queueing in the
			// generator counts (no coordinated omission).
			err := client.DoTimeout(req, resp, 5*time.Second)
			lat := time.Since(due)
			if err != nil {
				errs.Add(1)
				return
			}
			v, _ := statuses.LoadOrStore(resp.StatusCode(), new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			mu.Lock()
			latencies = append(latencies, lat)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(startAt)
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(float64(len(latencies))*p))]
	}
	fmt.Printf("sent=%d ok=%d errors=%d rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f statuses=", n, len(latencies), errs.Load(),
		float64(len(latencies))/elapsed.Seconds(), ms(pct(0.50)), ms(pct(0.99)), ms(pct(1)))
	statuses.Range(func(k, v any) bool { fmt.Printf("%v:%d,", k, v.(*atomic.Int64).Load()); return true })
	fmt.Println()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
