#!/usr/bin/env bash
# A one-node ClickHouse cluster for the tests of the sinker's cluster mode:
# a standalone ZooKeeper (Debian's `zookeeper`) and a second ClickHouse
# server whose cluster `alumini_local` is itself, with replication on, so
# that ReplicatedMergeTree tables, Distributed tables and ON CLUSTER DDL run
# for real. Kept apart from the server of `make run`: a ClickHouse server
# holding replicated tables does not start while its ZooKeeper is down.
#   cluster.sh start DATA_DIR   start both (if not running), print the address
#   cluster.sh stop DATA_DIR    stop both
# With CLICKHOUSE_CLUSTER_ADDR set, `start` only prints it.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DATA_DIR}
data=$(mkdir -p "${2:?usage: cluster.sh start|stop DATA_DIR}" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
zk_port=${ALUMINI_ZOOKEEPER_PORT:-29181}
export ALUMINI_CLICKHOUSE_TCP_PORT=${ALUMINI_CLUSTER_TCP_PORT:-29000}
export ALUMINI_CLICKHOUSE_HTTP_PORT=${ALUMINI_CLUSTER_HTTP_PORT:-28123}
export ALUMINI_CLICKHOUSE_TCP_PORT_SECURE=${ALUMINI_CLUSTER_TCP_PORT_SECURE:-29440}
interserver_port=${ALUMINI_CLUSTER_INTERSERVER_PORT:-29009}
zk_pidfile=$data/zookeeper.pid

zk_ok() {
  [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$zk_port" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" = imok ]
}

start_zookeeper() {
  zk_ok && return 0
  local jar=/usr/share/java/zookeeper.jar
  [ -f "$jar" ] || { echo "cluster: ZooKeeper is missing: run deploy/deps.sh (apt-get install zookeeper)" >&2; exit 1; }
  mkdir -p "$data/zookeeper"
  # ZooKeeperServerMain: standalone, port and data directory as arguments;
  # the jar's manifest names its dependencies. No admin web server.
  setsid java -Xmx256m -Dzookeeper.admin.enableServer=false -Dzookeeper.4lw.commands.whitelist=ruok \
    -cp "$jar" org.apache.zookeeper.server.ZooKeeperServerMain "$zk_port" "$data/zookeeper" \
    >>"$data/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$zk_pidfile"
  for _ in $(seq 1 60); do zk_ok && return 0; sleep 0.5; done
  echo "cluster: ZooKeeper did not answer on 127.0.0.1:$zk_port within 30s; see $data/zookeeper.log" >&2
  exit 1
}

case "$cmd" in
start)
  if [ -n "${CLICKHOUSE_CLUSTER_ADDR:-}" ]; then
    # Someone else's cluster: only say where it is.
    echo "$CLICKHOUSE_CLUSTER_ADDR"
    exit 0
  fi
  start_zookeeper
  # clickhouse.sh writes DATA/clickhouse/config.xml; the server merges
  # config.d/*.xml next to it.
  mkdir -p "$data/clickhouse/config.d"
  cat >"$data/clickhouse/config.d/replication.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$zk_port</port></node>
    </zookeeper>
    <!-- The macros the sinker's replicated tables name in their paths. -->
    <macros><shard>01</shard><replica>r1</replica></macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>$interserver_port</interserver_http_port>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
XML
  # CLICKHOUSE_ADDR names the other server; it must not stand in for this one.
  CLICKHOUSE_ADDR='' "$here/clickhouse.sh" start "$data/clickhouse"
  ;;
stop)
  "$here/clickhouse.sh" stop "$data/clickhouse"
  if [ -f "$zk_pidfile" ]; then
    kill "$(cat "$zk_pidfile")" 2>/dev/null || true
    rm -f "$zk_pidfile"
  fi
  ;;
*)
  echo "usage: cluster.sh start|stop DATA_DIR" >&2
  exit 2
  ;;
esac
