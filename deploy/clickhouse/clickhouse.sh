#!/usr/bin/env bash
# Makes a ClickHouse server available on loopback for `make run` and `make test`.
#   clickhouse.sh start DATA_DIR   install Debian's clickhouse-server if missing, run it
#                                  from DATA_DIR, wait until it answers, print its address
#   clickhouse.sh stop DATA_DIR    stop the server started from DATA_DIR
# With CLICKHOUSE_ADDR set, `start` only checks that server and prints its address.
set -euo pipefail

cmd=${1:?usage: clickhouse.sh start|stop DATA_DIR}
data=$(mkdir -p "${2:?usage: clickhouse.sh start|stop DATA_DIR}" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tcp_port=${ALUMINI_CLICKHOUSE_TCP_PORT:-19000}
http_port=${ALUMINI_CLICKHOUSE_HTTP_PORT:-18123}
secure_port=${ALUMINI_CLICKHOUSE_TCP_PORT_SECURE:-19440}
pidfile=$data/clickhouse-server.pid

# answers HOST PORT: true when a ClickHouse native port accepts a query.
answers() {
  clickhouse-client --host "$1" --port "$2" --query 'SELECT 1' >/dev/null 2>&1
}

# listening PORT: true when something accepts TCP connections on loopback PORT.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# has_test_cluster: true when the server on tcp_port has the one-node
# cluster of config.xml.in (tests build cluster-mode tables on it).
has_test_cluster() {
  [ "$(clickhouse-client --port "$tcp_port" --query "SELECT count() FROM system.clusters WHERE cluster = 'alumini_local'" 2>/dev/null)" = 1 ]
}

stop_server() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "clickhouse: still running after 30s; killing" >&2; kill -KILL "$pid"; }
  fi
  rm -f "$pidfile"
}

install_server() {
  command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null && return
  echo "clickhouse: installing Debian's clickhouse-server and clickhouse-client" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >&2
}

case "$cmd" in
start)
  if [ -n "${CLICKHOUSE_ADDR:-}" ]; then
    command -v clickhouse-client >/dev/null || install_server
    if ! answers "${CLICKHOUSE_ADDR%:*}" "${CLICKHOUSE_ADDR##*:}"; then
      echo "clickhouse: CLICKHOUSE_ADDR=$CLICKHOUSE_ADDR does not answer" >&2
      exit 1
    fi
    echo "$CLICKHOUSE_ADDR"
    exit 0
  fi
  install_server
  if answers 127.0.0.1 "$tcp_port"; then
    # A server of ours started from an older configuration (before TLS,
    # or before the test cluster) is restarted with the current one; a
    # foreign one is left alone.
    if [ ! -f "$pidfile" ] || { listening "$secure_port" && has_test_cluster; }; then
      echo "127.0.0.1:$tcp_port"
      exit 0
    fi
    echo "clickhouse: restarting the local server with the current configuration" >&2
    stop_server
  fi
  mkdir -p "$data/log" "$data/tmp" "$data/user_files" "$data/format_schemas" "$data/tls"
  if [ ! -f "$data/tls/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$data/tls/key.pem" -out "$data/tls/cert.pem" 2>/dev/null
  fi
  sed -e "s|@DATA@|$data|g" -e "s|@TCP_PORT@|$tcp_port|g" -e "s|@HTTP_PORT@|$http_port|g" \
    -e "s|@TCP_PORT_SECURE@|$secure_port|g" "$here/config.xml.in" >"$data/config.xml"
  cp "$here/users.xml" "$data/users.xml"
  # setsid: the server outlives this script and ignores the terminal's Ctrl-C;
  # the caller stops it with `clickhouse.sh stop`, after the services flushed.
  # ClickHouse 18.16 writes no pid file unless it daemonizes, so the pid is
  # taken here (setsid execs the server in place: $! is the server's pid).
  setsid clickhouse-server --config-file="$data/config.xml" \
    >>"$data/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if answers 127.0.0.1 "$tcp_port"; then
      echo "127.0.0.1:$tcp_port"
      exit 0
    fi
    sleep 0.5
  done
  echo "clickhouse: server did not answer on 127.0.0.1:$tcp_port within 60s; see $data/log/" >&2
  tail -20 "$data/log/clickhouse-server.err.log" >&2 2>/dev/null || true
  exit 1
  ;;
stop)
  stop_server
  ;;
*)
  echo "usage: clickhouse.sh start|stop DATA_DIR" >&2
  exit 2
  ;;
esac
