# Shared by run.sh, ab.sh, fixed.sh and control.sh (sourced, from the collector folder):
# loopback ports, a work folder cleaned up on exit, the bench client
# registry and request bodies, and starting the broker and a collector the
# way every collector benchmark does (collector on core 0, broker and load
# on core 1).
# The script itself, and so every curl, awk and sleep it starts, runs on
# core 1: left anywhere, they landed on the collector's core (in one
# traced run, the reads of /proc at the start of the measured seconds ran
# there for 15 ms, and curls for up to 11 ms each).
taskset -cp 1 $$ >/dev/null
KAFKA_PORT=${KAFKA_PORT:-19092}
HTTP_PORT=${HTTP_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19100}
BATCH=${BATCH:-100}

# refuse_taken_ports PORT...: a port already taken would send the
# collector's events to someone else's broker, or measure someone else's
# server.
refuse_taken_ports() {
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use; set NOOP_PORT, KAFKA_PORT, HTTP_PORT or ADMIN_PORT" >&2; exit 1
    fi
  done
}

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

go build -o "$WORK/bench" ./bench
CLK=$(getconf CLK_TCK)

cat > "$WORK/clients.yaml" <<YAML
clients:
  - id: bench
    write_keys: [wk_bench]
YAML
EVENT='{"client_id":"bench","url":"https://bench.example/pricing?utm_source=news","referrer":"https://www.google.com/","title":"Pricing","language":"en-US","screen_width":1280,"screen_height":800,"timezone":"Europe/Berlin","properties":{"plan":"pro","seats":3}}'
printf '%s' "$EVENT" > "$WORK/event.json"
{ printf '['; for i in $(seq 1 "$BATCH"); do [ "$i" -gt 1 ] && printf ','; printf '%s' "$EVENT"; done; printf ']'; } > "$WORK/batch.json"
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "rb")
wrk.body = f:read("*a")
f:close()
LUA

wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_broker: a fresh embedded broker with its log in files (in memory,
# kfake stalls every produce while it copies a growing log); sets BROKER.
start_broker() {
  rm -rf "$WORK/kafka"
  taskset -c 1 "$WORK/bench" kafka -addr 127.0.0.1:$KAFKA_PORT -data-dir "$WORK/kafka" >/dev/null & BROKER=$!; PIDS+=("$BROKER")
  sleep 0.5
}

# start_collector BINARY [FLAG...]: the collector with the rate limits off,
# ready to serve; sets COL.
start_collector() {
  local bin=$1; shift
  taskset -c 0 "$bin" -kafka-brokers 127.0.0.1:$KAFKA_PORT -clients-file "$WORK/clients.yaml" \
    -listen-addr 127.0.0.1:$HTTP_PORT -admin-addr 127.0.0.1:$ADMIN_PORT -log-level warn \
    -ip-rate-limit 0 -client-rate-limit 0 -max-inflight-bytes 1073741824 -max-batch-events 1000 "$@" & COL=$!; PIDS+=("$COL")
  wait_up http://127.0.0.1:$ADMIN_PORT/readyz
}

# fixed_rate PORT EP RATE SECONDS: the open-loop generator (`bench load`) on
# core 1, POSTing EP's body to /api/EP at RATE requests/s for SECONDS after
# a 2 s warm-up, on CONNS connections (256); VISITORS and LATENCIES=FILE
# pass through (see fixed.sh). Prints its line of results.
fixed_rate() {
  taskset -c 1 "$WORK/bench" load -url "http://127.0.0.1:$1/api/$2" -body "$WORK/$2.json" -rate "$3" \
    -warmup 2s -duration "$4s" -conns "${CONNS:-256}" -visitors "${VISITORS:-1}" ${LATENCIES:+-latencies "$LATENCIES"}
}

# stop PID...: stops processes started above.
stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
