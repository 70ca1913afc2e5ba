#!/usr/bin/env bash
# Side-by-side CPU of two collector builds under the same wrk load;
# reproduces the A/B tables of docs/bench/collector.md.
#
#   bash collector/bench/ab.sh OLD_BINARY NEW_BINARY [event|batch] [rounds]
#
# Build the old one from a commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old/collector && go build -o /tmp/collector.old .)
# Each round runs OLD then NEW, each against a fresh broker: collector on
# core 0, broker and wrk on core 1, 2 s warm-up, 8 s measured. Prints
# requests/s and the collector's CPU µs per request from /proc.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [event|batch] [rounds]" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2"); EP=${3:-event}; ROUNDS=${4:-2}
KAFKA_PORT=${KAFKA_PORT:-29092} HTTP_PORT=${HTTP_PORT:-28080} ADMIN_PORT=${ADMIN_PORT:-29100}
cd "$(dirname "$0")/.."
for port in "$KAFKA_PORT" "$HTTP_PORT" "$ADMIN_PORT"; do
  # A port already taken would send the collectors' events to someone
  # else's broker, or measure someone else's server.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; set KAFKA_PORT, HTTP_PORT or ADMIN_PORT" >&2; exit 1
  fi
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
go build -o "$WORK/bench" ./bench
printf 'clients:\n  - id: bench\n    write_keys: [wk_bench]\n' > "$WORK/clients.yaml"
EVENT='{"client_id":"bench","url":"https://bench.example/pricing?utm_source=news","referrer":"https://www.google.com/","title":"Pricing","language":"en-US","screen_width":1280,"screen_height":800,"timezone":"Europe/Berlin","properties":{"plan":"pro","seats":3}}'
printf '%s' "$EVENT" > "$WORK/event.json"
{ printf '['; for i in $(seq 1 100); do [ "$i" -gt 1 ] && printf ','; printf '%s' "$EVENT"; done; printf ']'; } > "$WORK/batch.json"
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal f = io.open(os.getenv("BODY"), "rb")\nwrk.body = f:read("*a")\nf:close()\n' > "$WORK/post.lua"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() {
  local bin=$1
  rm -rf "$WORK/kafka"
  taskset -c 1 "$WORK/bench" kafka -addr 127.0.0.1:$KAFKA_PORT -data-dir "$WORK/kafka" >/dev/null & local k=$!; PIDS+=("$k")
  sleep 0.5
  taskset -c 0 "$bin" -kafka-brokers 127.0.0.1:$KAFKA_PORT -clients-file "$WORK/clients.yaml" \
    -listen-addr 127.0.0.1:$HTTP_PORT -admin-addr 127.0.0.1:$ADMIN_PORT -log-level warn \
    -ip-rate-limit 0 -client-rate-limit 0 -max-inflight-bytes 1073741824 -max-batch-events 1000 & local c=$!; PIDS+=("$c")
  for _ in $(seq 100); do curl -fs http://127.0.0.1:$ADMIN_PORT/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  BODY="$WORK/$EP.json" taskset -c 1 wrk -t1 -c256 -d2s -s "$WORK/post.lua" "http://127.0.0.1:$HTTP_PORT/api/$EP" >/dev/null
  local c0; c0=$(cpu "$c")
  BODY="$WORK/$EP.json" taskset -c 1 wrk -t1 -c256 -d8s -s "$WORK/post.lua" "http://127.0.0.1:$HTTP_PORT/api/$EP" > "$WORK/out.wrk"
  local c1; c1=$(cpu "$c")
  local reqs rps
  reqs=$(awk '/requests in/ {print $1}' "$WORK/out.wrk"); rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out.wrk")
  echo "$bin /api/$EP: $rps req/s, $(awk -v a="$c0" -v b="$c1" -v k="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", (b - a) / k * 1e6 / n }') µs collector CPU per request"
  kill "$c" "$k"; wait "$c" "$k" 2>/dev/null || true
}

for _ in $(seq "$ROUNDS"); do measure "$OLD"; measure "$NEW"; done
