#!/usr/bin/env bash
# `make run`: the whole pipeline on one machine with embedded defaults.
# Starts ClickHouse (or uses CLICKHOUSE_ADDR), an embedded Kafka-protocol
# broker, and the four services; Ctrl-C stops them in order, flushing first.
# Data lives in $ALUMINI_DATA_DIR (default .data/) and survives restarts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data=${ALUMINI_DATA_DIR:-$root/.data}
mkdir -p "$data/logs" "$root/bin"
data=$(cd "$data" && pwd)

kafka_addr=${ALUMINI_DEV_KAFKA_ADDR:-127.0.0.1:9092}
collector_addr=${ALUMINI_DEV_COLLECTOR_ADDR:-127.0.0.1:8080}
reporter_addr=${ALUMINI_DEV_REPORTER_ADDR:-127.0.0.1:8081}

echo "==> Alumini: make run"
if [ ! -x "$root/bin/collector" ] || [ ! -f "$data/clients.yaml" ]; then
  echo "    The first start on a fresh machine takes a few minutes (about 3.5 on 2 cores):"
  echo "    Debian packages, npm, then building the services; every step is printed below."
  echo "    Later starts take seconds."
fi

echo "==> dependencies (deploy/deps.sh)"
"$root/deploy/deps.sh"

echo "==> ClickHouse"
started_clickhouse=0
if [ -z "${CLICKHOUSE_ADDR:-}" ] && ! clickhouse-client --port "${ALUMINI_CLICKHOUSE_TCP_PORT:-19000}" -q 'SELECT 1' >/dev/null 2>&1; then
  started_clickhouse=1
fi
clickhouse_addr=$("$root/deploy/clickhouse/clickhouse.sh" start "$data/clickhouse")
echo "    $clickhouse_addr"

echo "==> building into bin/ (the first build compiles every dependency: a minute or two)"
for target in ./collector ./enricher ./sinker ./reporter ./deploy/devkafka ./enricher/cmd/demo-geodb; do
  echo "    go build $target"
  go build -o "$root/bin/" "$target"
done

# Without a real city database (ALUMINI_GEO_DB), a made-up one places
# loopback in Germany, so that the reports show countries.
geo_db=${ALUMINI_GEO_DB:-}
if [ -z "$geo_db" ]; then
  geo_db=$data/demo-city.mmdb
  "$root/bin/demo-geodb" -o "$geo_db"
  echo "==> geo: made-up demo database $geo_db (loopback = DE); set ALUMINI_GEO_DB to a real .mmdb (docs/enricher.md#geo)"
else
  echo "==> geo: $geo_db"
fi

# The demo client's API key is made on the first run and kept (readable by
# you only) so later runs can show it again; the registry holds its hash.
if [ ! -f "$data/clients.yaml" ]; then
  key="alm_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  hash="sha256:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
  sed "s|api_key_hashes: \[\]|api_key_hashes: [\"$hash\"]|" "$root/deploy/clients.example.yaml" >"$data/clients.yaml"
  (umask 077 && printf '%s\n' "$key" >"$data/demo-api-key")
fi
if [ ! -f "$data/visitor-secret" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/visitor-secret")
fi

pids=()
names=()
start() { # name, then the command
  local name=$1
  shift
  # setsid: Ctrl-C goes to this script only, which then stops the services
  # one by one in data-flow order; a terminal's SIGINT to the whole process
  # group would stop the broker before the services had flushed into it.
  setsid "$@" >>"$data/logs/$name.log" 2>&1 </dev/null &
  pids+=($!)
  names+=("$name")
}

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping (collector first, so nothing new arrives while the rest flushes)"
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      kill -TERM "${pids[$i]}" 2>/dev/null || true
      wait "${pids[$i]}" 2>/dev/null || true
      echo "    ${names[$i]} stopped"
    fi
  done
  if ((started_clickhouse)); then
    "$root/deploy/clickhouse/clickhouse.sh" stop "$data/clickhouse"
    echo "    clickhouse stopped"
  fi
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_ready() { # name, url
  for _ in $(seq 1 100); do
    if curl -fsS "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not become ready; see $data/logs/$1.log" >&2
  tail -20 "$data/logs/$1.log" >&2
  exit 1
}

export ALUMINI_KAFKA_BROKERS=$kafka_addr
export ALUMINI_CLIENTS_FILE=$data/clients.yaml
export ALUMINI_CLICKHOUSE_ADDR=$clickhouse_addr
export ALUMINI_LOG_FORMAT=json
ALUMINI_VISITOR_SECRET=$(cat "$data/visitor-secret")
export ALUMINI_VISITOR_SECRET

echo "==> starting (logs in $data/logs/)"
# Started in reverse order of the data flow and stopped in the order of it
# (stop_all walks the list backwards): the broker first, the collector last.
start kafka "$root/bin/devkafka" -addr "$kafka_addr" -data-dir "$data/kafka"
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/${kafka_addr%:*}/${kafka_addr##*:}") 2>/dev/null && break; sleep 0.1; done
start reporter "$root/bin/reporter" -listen-addr "$reporter_addr" -admin-addr 127.0.0.1:9103
start sinker "$root/bin/sinker" -admin-addr 127.0.0.1:9102
start enricher "$root/bin/enricher" -admin-addr 127.0.0.1:9101 -geo-db "$geo_db"
start collector "$root/bin/collector" -listen-addr "$collector_addr" -admin-addr 127.0.0.1:9100
wait_ready sinker http://127.0.0.1:9102/readyz
wait_ready enricher http://127.0.0.1:9101/readyz
wait_ready reporter http://127.0.0.1:9103/readyz
wait_ready collector http://127.0.0.1:9100/readyz

key=$(cat "$data/demo-api-key")
cat <<TXT

Alumini is running.
  collector   http://$collector_addr      (POST /api/event, /api/batch, /v1/*, GET /p.gif, /t.js; metrics on 127.0.0.1:9100/metrics)
  enricher    metrics on http://127.0.0.1:9101/metrics
  sinker      metrics on http://127.0.0.1:9102/metrics
  reporter    http://$reporter_addr      (dashboard at /, API under /api/v1; metrics on 127.0.0.1:9103/metrics)
  kafka       $kafka_addr (embedded, data in $data/kafka)
  clickhouse  $clickhouse_addr (database alumini)

Demo client: id "demo", write key "wk_demo", API key $key

Send an event:
  curl -i -X POST http://$collector_addr/api/event -H 'Content-Type: application/json' \\
    -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' \\
    -d '{"client_id":"demo","url":"http://localhost/hello","referrer":"https://www.google.com/"}'
  (without a browser's User-Agent, curl's own counts as a bot, which reports leave out)
Read the report (or open http://$reporter_addr/ and log in with the API key):
  curl -H 'Authorization: Bearer $key' 'http://$reporter_addr/api/v1/stats/aggregate?period=today'
Track a web page:
  <script defer src="http://$collector_addr/t.js" data-key="wk_demo"></script>

Ctrl-C stops everything.
TXT

# Wait until Ctrl-C or until a service dies.
while true; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} exited; see $data/logs/${names[$i]}.log" >&2
      tail -5 "$data/logs/${names[$i]}.log" >&2
      exit 1
    fi
  done
  sleep 1
done
