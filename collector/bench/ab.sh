#!/usr/bin/env bash
# Side-by-side CPU of two collector builds under the same wrk load;
# reproduces the A/B tables of docs/bench/collector.md.
#
#   bash collector/bench/ab.sh OLD_BINARY NEW_BINARY [event|batch] [rounds]
#
# Build the old one from a commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old/collector && go build -o /tmp/collector.old .)
# Rounds alternate the order (OLD NEW, NEW OLD, ...): on this machine the
# first of two back-to-back runs of the same binary measured 41 against
# 22 µs per request, so a fixed order would decide the comparison. Each
# run has a fresh broker: collector on core 0, broker and wrk on core 1,
# 2 s warm-up, 8 s measured. Prints requests/s and the collector's CPU µs
# per request from /proc.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [event|batch] [rounds]" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2"); EP=${3:-event}; ROUNDS=${4:-2}
cd "$(dirname "$0")/.."
source bench/common.sh
refuse_taken_ports "$KAFKA_PORT" "$HTTP_PORT" "$ADMIN_PORT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

measure() {
  local bin=$1
  start_broker
  start_collector "$bin"
  BODY="$WORK/$EP.json" taskset -c 1 wrk -t1 -c256 -d2s -s "$WORK/post.lua" "http://127.0.0.1:$HTTP_PORT/api/$EP" >/dev/null
  local c0; c0=$(cpu "$COL")
  BODY="$WORK/$EP.json" taskset -c 1 wrk -t1 -c256 -d8s -s "$WORK/post.lua" "http://127.0.0.1:$HTTP_PORT/api/$EP" > "$WORK/out.wrk"
  local c1; c1=$(cpu "$COL")
  local reqs rps
  reqs=$(awk '/requests in/ {print $1}' "$WORK/out.wrk"); rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out.wrk")
  echo "$bin /api/$EP: $rps req/s, $(awk -v a="$c0" -v b="$c1" -v k="$CLK" -v n="$reqs" 'BEGIN { printf "%.1f", (b - a) / k * 1e6 / n }') µs collector CPU per request"
  stop "$COL" "$BROKER"
}

for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then measure "$OLD"; measure "$NEW"; else measure "$NEW"; measure "$OLD"; fi
done
