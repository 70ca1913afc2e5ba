#!/usr/bin/env bash
# The latency control for fixed.sh: a fasthttp server that spends WORK of
# CPU per request and answers 204, with no Kafka, at the same fixed rate,
# on the same cores (server on core 0, generator on core 1). If it stays
# well under the collector's p99 at the same CPU per request, the
# collector's tail is its own (waiting for Kafka), not the machine's
# queueing; reproduces the control rows of docs/bench/collector.md.
#
#   bash collector/bench/control.sh RATE [event|batch] WORK [seconds]   (e.g. 2500 batch 270us)
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 RATE [event|batch] WORK [seconds]" >&2; exit 2; }
RATE=$1; EP=$2; WORK_PER_REQUEST=$3; DUR=${4:-10}
cd "$(dirname "$0")/.."
source bench/common.sh
NOOP_PORT=${NOOP_PORT:-18090}
refuse_taken_ports "$NOOP_PORT"
taskset -c 0 "$WORK/bench" noop -addr 127.0.0.1:$NOOP_PORT -work "$WORK_PER_REQUEST" >/dev/null & SRV=$!; PIDS+=("$SRV")
sleep 0.5
c0=$(cpu "$SRV")
fixed_rate "$NOOP_PORT" "$EP" "$RATE" "$DUR" > "$WORK/load.out"
c1=$(cpu "$SRV")
echo "control ($WORK_PER_REQUEST of CPU per request) /api/$EP at $RATE req/s: $(cat "$WORK/load.out")"
echo "server CPU: $(awk -v a="$c0" -v b="$c1" -v k="$CLK" -v r="$RATE" -v d="$DUR" 'BEGIN { printf "%.1f µs per request, %.0f %% of its core (warm-up included)", (b - a) / k * 1e6 / (r * (d + 2)), (b - a) / k / (d + 2) * 100 }')"
stop "$SRV"
