#!/usr/bin/env bash
# Load benchmark of the collector; reproduces docs/bench/collector.md.
#
#   bash collector/bench/run.sh [seconds-per-run]    (default 10)
#
# The collector (or a no-op server) runs pinned to core 0; wrk, the
# fixed-rate generator and the embedded broker share core 1. CPU time per
# request comes from the server's /proc/<pid>/stat, so it does not depend
# on the load generator. Needs wrk (apt-get install wrk) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${CONNS:-256}
NOOP_CONNS=${NOOP_CONNS:-64}
# Loopback ports; change them when something else (a `make run`) holds one.
NOOP_PORT=${NOOP_PORT:-18090}
source bench/common.sh
refuse_taken_ports "$NOOP_PORT" "$KAFKA_PORT" "$HTTP_PORT" "$ADMIN_PORT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

go build -o "$WORK/collector" .

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'; }

# run NAME URL BODYFILE EVENTS_PER_REQUEST PID: one wrk run at full speed.
RESULTS=()
run() {
  local name=$1 url=$2 body=$3 per=$4 pid=$5 CONNS=${6:-$CONNS}
  BODY=$body taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "$url" >/dev/null # warm up
  local c0; c0=$(cpu "$pid")
  BODY=$body taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$WORK/post.lua" "$url" > "$WORK/$name.wrk"
  local c1; c1=$(cpu "$pid")
  local rps reqs p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$WORK/$name.wrk")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk")")
  bad=$(awk '/Non-2xx/ {print $5}' "$WORK/$name.wrk"); bad=${bad:-0}
  local cpu_req cpu_ev
  cpu_req=$(awk -v a="$c0" -v b="$c1" -v k="$CLK" -v n="$reqs" 'BEGIN { printf "%.1f", (b - a) / k * 1e6 / n }')
  cpu_ev=$(awk -v r="$cpu_req" -v p="$per" 'BEGIN { printf "%.2f", r / p }')
  RESULTS+=("| $name | $rps | $(awk -v r="$rps" -v p="$per" 'BEGIN { printf "%.0f", r * p }') | $p50 | $p99 | $bad | $cpu_req | $cpu_ev | $(( $(hwm "$pid") / 1024 )) |")
  echo "$name: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $bad, ${cpu_req} us CPU/request" >&2
  LAST_RPS=${rps%.*}
}

# Ceilings first, each alone on core 0.
for impl in fasthttp nethttp; do
  taskset -c 0 "$WORK/bench" noop -impl "$impl" -addr 127.0.0.1:$NOOP_PORT >/dev/null & pid=$!; PIDS+=("$pid")
  sleep 0.5
  run "noop-$impl" http://127.0.0.1:$NOOP_PORT/api/event "$WORK/event.json" 1 "$pid" "$NOOP_CONNS"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

start_broker
start_collector "$WORK/collector"

run collector-event http://127.0.0.1:$HTTP_PORT/api/event "$WORK/event.json" 1 "$COL"
HALF=$((LAST_RPS / 2))
run "collector-batch$BATCH" http://127.0.0.1:$HTTP_PORT/api/batch "$WORK/batch.json" "$BATCH" "$COL"
HALF_BATCH=$((LAST_RPS / 2))

echo >&2 "fixed rate at half the maximum: $HALF req/s of one event, $HALF_BATCH req/s of $BATCH"
HALF_EVENT_OUT=$(fixed_rate "$HTTP_PORT" event "$HALF" "$DUR")
HALF_BATCH_OUT=$(fixed_rate "$HTTP_PORT" batch "$HALF_BATCH" "$DUR")
METRICS=$(curl -fs http://127.0.0.1:$ADMIN_PORT/metrics | grep -E '^alumini_collector_(events_accepted_total|events_dropped_total|produce_failures_total)' || true)

echo "Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'); $(go version | awk '{print $3}'); ${DUR}s per run, $CONNS connections to the collector and $NOOP_CONNS to the no-op servers (their best), wrk on core 1"
echo
echo "| run | requests/s | events/s | p50 ms | p99 ms | non-2xx | server CPU µs/request | server CPU µs/event | server peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${RESULTS[@]}"
echo
echo "Fixed rate, half the maximum (open loop, latency from when each request was due):"
echo
echo "- /api/event at $HALF req/s: $HALF_EVENT_OUT"
echo "- /api/batch ($BATCH events) at $HALF_BATCH req/s: $HALF_BATCH_OUT"
echo
echo "Collector counters after the run:"
echo
echo '```'
echo "$METRICS"
echo '```'
