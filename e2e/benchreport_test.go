package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

// report prints the run's figures, each with what it is measured from, so
// that a run's output pasted in docs/bench/e2e.md explains itself.
func (b *benchRun) report(res *benchResult) {
	w := io.Writer(os.Stdout)
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	load, _ := os.ReadFile("/proc/loadavg")
	p("")
	p("== Alumini end-to-end benchmark, %s ==", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("machine: %d cores, %s, load average before the run: %s; code: %s", runtime.NumCPU(), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "), codeVersion())
	p("instances: collector=%d, enricher=%d, sinker=%d; %d partitions per topic; broker: kfake (deploy/devkafka) in its own process; ClickHouse at %s", b.counts["collector"], b.counts["enricher"], b.counts["sinker"], *benchPartitions, chtest.Addr())
	pins := "none (every process may use every core)"
	if len(b.pins) > 0 {
		var parts []string
		for _, stage := range benchStages {
			if c, ok := b.pins[stage]; ok {
				parts = append(parts, fmt.Sprintf("%s=%v", stage, c))
			}
		}
		pins = strings.Join(parts, " ")
	}
	p("pinned: %s", pins)
	kind := fmt.Sprintf("batches of %d events (/api/batch)", *benchBatch)
	if *benchBatch == 1 {
		kind = "single events (/api/event)"
	}
	p("load: open loop, %s events/s offered for %v as %s on %d connections; %s returning visitors, %.1f %% of requests from a new visitor with a user agent never sent before; %v marker events/s",
		num(*benchRate), *benchFor, kind, *benchConns, num(float64(*benchVisitors)), 100**benchUnseen, *benchMarkers)
	p("")

	sendFor := res.sendEnd.Sub(res.start)
	storeFor := res.storedEnd.Sub(res.start)
	p("offered:   %s events in %s requests over %.1f s = %s events/s sent", num(float64(res.sentEvents)), num(float64(res.requests)), sendFor.Seconds(), num(float64(res.sentEvents)/sendFor.Seconds()))
	lat := slices.Clone(res.latencies[:min(int(res.requests), len(res.latencies))])
	slices.Sort(lat)
	p("answers:   %s events 2xx; %d requests 4xx, %d 5xx or failed%s; latency from when each request was due: p50 %s, p99 %s, max %s",
		num(float64(res.acceptedEvents)), res.rejected, res.failed, firstErr(res), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(pct(lat, 1)))
	atSendEnd := storedAt(res.samples, sendFor)
	p("stored:    %s events; the last %.1f s after sending ended; %s stored while sending (%s events/s)",
		num(float64(res.distinct)), res.storedEnd.Sub(res.sendEnd).Seconds(), num(float64(atSendEnd)), num(float64(atSendEnd)/sendFor.Seconds()))
	sustained := float64(res.acceptedEvents) / storeFor.Seconds()
	p("sustained: %s events/s stored (every accepted event over the time from the first sent to the last stored, %.1f s)", num(sustained), storeFor.Seconds())
	if res.storedEnd.Sub(res.sendEnd) < 2*time.Second {
		p("           the pipeline kept up with the offered rate: its capacity is higher; offer more (-rate) to measure it")
	}

	var fresh []time.Duration
	for _, m := range res.markers {
		if !m.stored.IsZero() {
			fresh = append(fresh, m.stored.Sub(m.accepted))
		}
	}
	slices.Sort(fresh)
	p("freshness: %d of %d marker events seen; 2xx to queryable p50 %s, p99 %s, max %s (ClickHouse polled every 100 ms)",
		len(fresh), len(res.markers), sec(pct(fresh, 0.5)), sec(pct(fresh, 0.99)), sec(pct(fresh, 1)))
	verdict := "OK: every 2xx stored, once"
	if res.missing > 0 || res.unknown > 0 || res.finalRows != res.distinct {
		verdict = "FAILED"
	}
	p("accounted: %s: %s accepted (and %d markers), %d missing, %d stored ids never sent, %s rows under FINAL for %s ids, %d ids with more than one row before merging (%s rows in all)",
		verdict, num(float64(res.acceptedEvents)), len(res.markers), res.missing, res.unknown, num(float64(res.finalRows)), num(float64(res.distinct)), res.doubled, num(float64(res.stored)))
	p("")

	b.reportCPU(p, res, sustained)
	b.reportInstances(p, res)
	b.reportTimeline(p, res)
}

// reportCPU prints each stage's CPU per stored event from /proc/<pid>/stat
// over the run (first event sent to last stored).
func (b *benchRun) reportCPU(p func(string, ...any), res *benchResult, sustained float64) {
	wall := res.storedEnd.Sub(res.start)
	events := float64(res.distinct)
	p("CPU from /proc/<pid>/stat, first event sent to last stored (%.1f s), per event stored; \"above idle\" leaves out what the process used at the rate of the %v before the load; \"waited for core\": runnable but not running (/proc/<pid>/task/*/schedstat), in cores:", wall.Seconds(), res.idleFor)
	p("  %-11s %10s %12s %12s %19s %16s", "stage", "µs/event", "above idle", "cores busy", "cores busy at idle", "waited for core")
	var pipeline float64
	for _, stage := range benchStages {
		var used, idle, waited time.Duration
		seen := false
		for proc := range b.pids {
			if b.stage(proc) != stage {
				continue
			}
			end, ok := res.cpuEnd[proc]
			if !ok {
				continue
			}
			seen = true
			used += end - res.cpuStart[proc]
			idle += res.idleCPU[proc]
			waited += res.waitEnd[proc] - res.waitStart[proc]
		}
		if !seen {
			p("  %-11s %10s", stage, "not measured")
			continue
		}
		perEvent := float64(used.Microseconds()) / events
		// What the process used before the load at the same rate is not
		// the load's: a shared ClickHouse serves others meanwhile.
		idleRate := idle.Seconds() / res.idleFor.Seconds()
		aboveIdle := max(0, used.Seconds()-idleRate*wall.Seconds()) * 1e6 / events
		if stage != "load" {
			pipeline += aboveIdle
		}
		note := ""
		switch stage {
		case "load":
			note = "  (this test process: generator, markers, sampling)"
		case "clickhouse":
			note = "  (and any other client of this server: see its rate at idle)"
		}
		p("  %-11s %10.1f %12.1f %12.2f %19.2f %16.2f%s", stage, perEvent, aboveIdle, used.Seconds()/wall.Seconds(), idleRate, waited.Seconds()/wall.Seconds(), note)
	}
	machine := (res.cpuEnd["machine"] - res.cpuStart["machine"]).Seconds() / wall.Seconds()
	ours := 0.0
	for proc, d := range res.cpuEnd {
		if proc != "machine" {
			ours += (d - res.cpuStart[proc]).Seconds() / wall.Seconds()
		}
	}
	p("  the whole machine (/proc/stat): %.2f of %d cores busy, %.2f of them outside this benchmark's processes (at idle before: %.2f)",
		machine, runtime.NumCPU(), max(0, machine-ours), res.idleCPU["machine"].Seconds()/res.idleFor.Seconds())
	cores := runtime.NumCPU()
	if len(b.pins) > 0 {
		all := map[int]bool{}
		for stage, c := range b.pins {
			if stage == "load" {
				continue
			}
			for _, cpu := range c {
				all[cpu] = true
			}
		}
		cores = len(all)
	}
	if pipeline > 0 {
		estimate := float64(cores) * 1e6 / pipeline
		p("  pipeline (collector to ClickHouse, above idle): %.1f µs/event; CPU-bound estimate on %d cores: %s events/s; sustained / estimate = %.2f",
			pipeline, cores, num(estimate), sustained/estimate)
		if others := machine - ours; len(b.pins) == 0 && others > 0.05 {
			left := float64(cores) - others
			p("  on the %.2f cores others left (%d minus %.2f): %s events/s; sustained / that = %.2f",
				left, cores, others, num(left*1e6/pipeline), sustained/(left*1e6/pipeline))
		}
	}
	p("")
}

// reportInstances prints each instance's share: its partitions at the end
// of the run and its throughput counter's increase.
func (b *benchRun) reportInstances(p func(string, ...any), res *benchResult) {
	wall := res.storedEnd.Sub(res.start).Seconds()
	p("instances (partitions held at the end; events counted by the instance's own %s metric):", "throughput")
	p("  %-13s %10s %12s %12s %11s", "instance", "partitions", "events", "events/s", "GOMAXPROCS")
	for _, name := range b.instances {
		parts := "-"
		if stage := b.stageOf[name]; stage != "collector" {
			parts = fmt.Sprint(res.partitions[stage]["alumini-"+name]) // the member's client id
		}
		c := res.counters[name]
		procs := "-"
		if n, ok := res.gomaxprocs[name]; ok {
			procs = fmt.Sprint(n)
		}
		p("  %-13s %10s %12s %12s %11s   (%s)", name, parts, num(c[1]-c[0]), num((c[1]-c[0])/wall), procs, throughputCounter[b.stageOf[name]])
	}
	p("")
}

// reportTimeline prints the samples: events sent, accepted and stored, the
// lag of each consumer group and each stage's cores busy, second by second.
func (b *benchRun) reportTimeline(p func(string, ...any), res *benchResult) {
	step := 1
	if len(res.samples) > 40 {
		step = (len(res.samples) + 39) / 40
	}
	p("over time (lag: records behind in the consumer group's committed offsets; cores busy since the row before):")
	head := fmt.Sprintf("  %6s %10s %10s %10s %9s %9s", "t s", "sent", "2xx", "stored", "raw lag", "enr. lag")
	for _, stage := range append(benchStages, "machine") {
		head += fmt.Sprintf(" %10s", stage)
	}
	p("%s", head)
	prevCPU, prevAt := res.cpuStart, time.Duration(0)
	var growing = map[string][2]float64{} // stage -> busy core-seconds and seconds while its input lag grew
	var prev sample
	for i, s := range res.samples {
		interval := (s.at - prevAt).Seconds()
		busy := map[string]float64{}
		for proc, d := range s.cpu {
			busy[b.stage(proc)] += (d - prevCPU[proc]).Seconds() / interval
		}
		if i > 0 {
			if s.rawLag > prev.rawLag {
				g := growing["enricher"]
				growing["enricher"] = [2]float64{g[0] + busy["enricher"]*interval, g[1] + interval}
			}
			if s.enrichedLag > prev.enrichedLag {
				g := growing["sinker"]
				growing["sinker"] = [2]float64{g[0] + busy["sinker"]*interval, g[1] + interval}
			}
		}
		if i%step == 0 || i == len(res.samples)-1 {
			line := fmt.Sprintf("  %6.1f %10d %10d %10d %9d %9d", s.at.Seconds(), s.sent, s.accepted, s.stored, s.rawLag, s.enrichedLag)
			for _, stage := range append(benchStages, "machine") {
				line += fmt.Sprintf(" %10.2f", busy[stage])
			}
			p("%s", line)
		}
		prevCPU, prevAt, prev = s.cpu, s.at, s
	}
	var stages []string
	for stage := range growing {
		stages = append(stages, stage)
	}
	sort.Strings(stages)
	for _, stage := range stages {
		g := growing[stage]
		if g[1] < 1 {
			continue
		}
		p("while its input lag grew (%.0f s of samples), the %s used %.2f cores on average, of %d it may use", g[1], stage, g[0]/g[1], b.cores(stage))
	}
	p("")
}

// cores is how many cores a stage may run on.
func (b *benchRun) cores(stage string) int {
	if c, ok := b.pins[stage]; ok {
		return len(c)
	}
	return runtime.NumCPU()
}

// codeVersion names the commit the services were built from, and whether
// the work tree had changes on top of it.
func codeVersion() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (no git)"
	}
	v := strings.TrimSpace(string(out))
	if changes, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(changes) > 0 {
		v += " with uncommitted changes"
	}
	return v
}

// storedAt is what was stored by the first sample at or after at.
func storedAt(samples []sample, at time.Duration) int64 {
	for _, s := range samples {
		if s.at >= at {
			return s.stored
		}
	}
	if len(samples) > 0 {
		return samples[len(samples)-1].stored
	}
	return 0
}

func firstErr(res *benchResult) string {
	if e, ok := res.firstErr.Load().(string); ok {
		return " (first: " + e + ")"
	}
	return ""
}

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) string  { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// num writes n rounded with thousands separated: 1,234,567.
func num(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
