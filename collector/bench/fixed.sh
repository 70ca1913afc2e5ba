#!/usr/bin/env bash
# One collector at a fixed request rate; reproduces the fixed-rate figures
# of docs/bench/collector.md.
#
#   bash collector/bench/fixed.sh RATE [event|batch] [seconds]   (default event, 10)
#
# Collector on core 0, broker and the open-loop generator (`bench load`,
# 2 s warm-up) on core 1, as run.sh runs them. Prints the generator's
# latency percentiles, then, over the measured seconds only, the
# collector's CPU per request, the broker's share of core 1, how busy each
# core was, and the collector's own histograms (from the warm-up's last
# second on): request duration (from reading the request to the answer),
# Kafka acknowledgement and each produce request's round trip (the
# broker's share). VISITORS spreads requests over that many visitors
# (partitions); LATENCIES=FILE keeps every measured request's due time and
# latency (bench load -latencies).
# WRK_FIRST=SECONDS first drives the collector that long with wrk at full
# speed, as run.sh does before its half-rate runs (its pools and heap then
# start from what 256 busy connections left).
# COLLECTOR_FLAGS adds flags (e.g. "-kafka-batch-timeout 0"); GOGC,
# GOMAXPROCS and the like pass through to the collector; COLLECTOR runs
# another build instead of this tree's (see ab.sh for building one).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RATE [event|batch] [seconds]" >&2; exit 2; }
RATE=$1; EP=${2:-event}; DUR=${3:-10}
[ -z "${COLLECTOR:-}" ] || COLLECTOR=$(realpath "$COLLECTOR")
cd "$(dirname "$0")/.."
source bench/common.sh
refuse_taken_ports "$KAFKA_PORT" "$HTTP_PORT" "$ADMIN_PORT"
if [ -z "${COLLECTOR:-}" ]; then
  COLLECTOR=$WORK/collector
  go build -o "$COLLECTOR" .
fi

start_broker
# shellcheck disable=SC2086 # COLLECTOR_FLAGS is a list of flags
start_collector "$COLLECTOR" ${COLLECTOR_FLAGS:-}
histograms() {
  curl -fs http://127.0.0.1:$ADMIN_PORT/metrics |
    grep -E "^alumini_collector_(request_duration_seconds_bucket\{endpoint=\"$EP\"|produce_duration_seconds_bucket|produce_request_duration_seconds_bucket)" || true
}
if [ -n "${WRK_FIRST:-}" ]; then
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
  BODY="$WORK/$EP.json" taskset -c 1 wrk -t1 -c256 -d"${WRK_FIRST}s" -s "$WORK/post.lua" "http://127.0.0.1:$HTTP_PORT/api/$EP" |
    awk '/Requests\/sec/ { print "wrk first: " $2 " req/s" }'
fi
fixed_rate "$HTTP_PORT" "$EP" "$RATE" "$DUR" > "$WORK/load.out" & LOAD=$!
# The histograms are read a second before the warm-up ends: a /metrics
# scrape is 3 ms of the collector's one core, and one at the start of the
# measured seconds made the 100 requests after it slow (0.4 %, enough to
# move the p99). So they also count the warm-up's last second.
sleep 1
histograms > "$WORK/h0"
sleep 1.05 # the end of the generator's warm-up
c0=$(cpu "$COL"); b0=$(cpu "$BROKER"); grep -E '^cpu[01] ' /proc/stat > "$WORK/stat0"
wait "$LOAD"
c1=$(cpu "$COL"); b1=$(cpu "$BROKER"); grep -E '^cpu[01] ' /proc/stat > "$WORK/stat1"; histograms > "$WORK/h1"
echo "/api/$EP at $RATE req/s: $(cat "$WORK/load.out")"
echo "collector CPU: $(awk -v a="$c0" -v b="$c1" -v k="$CLK" -v r="$RATE" -v d="$DUR" 'BEGIN { printf "%.1f µs per request, %.0f %% of its core", (b - a) / k * 1e6 / (r * d), (b - a) / k / d * 100 }')"
echo "broker CPU: $(awk -v a="$b0" -v b="$b1" -v k="$CLK" -v d="$DUR" 'BEGIN { printf "%.0f %% of core 1", (b - a) / k / d * 100 }')"
# How busy each core was, everything on it counted: the generator and the
# broker share core 1, and their lateness counts as the collector's latency.
echo "cores busy: $(paste -d' ' "$WORK/stat0" "$WORK/stat1" | awk '{
  busy = ($13 + $14 + $15 + $18 + $19) - ($2 + $3 + $4 + $7 + $8); all = busy + ($16 + $17) - ($5 + $6)
  sep = (NR > 1) ? ", " : ""
  printf "%s%s %.0f %% (softirq %.0f %%)", sep, $1, busy / all * 100, ($19 - $8) / all * 100 }')"
echo "collector histograms over the measured seconds and the last second of warm-up (requests at or under each bound):"
paste -d' ' "$WORK/h0" "$WORK/h1" | awk '{ split($1, a, "{"); printf "  %s{%s %d\n", a[1], a[2], $4 - $2 }'
stop "$COL" "$BROKER"
