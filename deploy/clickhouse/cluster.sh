#!/usr/bin/env bash
# A two-shard ClickHouse cluster for the tests of the sinker's cluster mode:
# a standalone ZooKeeper (Debian's `zookeeper`) and two more ClickHouse
# servers, the shards of the cluster `alumini_two` (each also has
# `alumini_local`, itself alone), with replication on, so that
# ReplicatedMergeTree tables, Distributed tables over two shards and ON
# CLUSTER DDL run for real. Kept apart from the server of `make run`: a
# ClickHouse server holding replicated tables does not start while its
# ZooKeeper is down.
#   cluster.sh start DATA_DIR   start them (those not running), print the first node's address
#   cluster.sh stop DATA_DIR    stop them
# With CLICKHOUSE_CLUSTER_ADDR set, `start` only prints it.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DATA_DIR}
data=$(mkdir -p "${2:?usage: cluster.sh start|stop DATA_DIR}" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
zk_port=${ALUMINI_ZOOKEEPER_PORT:-29181}
# Node n (1, 2) listens on base+100*(n-1): native 29000/29100, HTTP
# 28123/28223, TLS 29440/29540, replication 29009/29109.
tcp_base=${ALUMINI_CLUSTER_TCP_PORT:-29000}
zk_pidfile=$data/zookeeper.pid

# zk_ok: ZooKeeper serves sessions. Not `ruok`, which answers imok while
# the server is still loading and refusing sessions (ClickHouse with
# replicated tables then fails to start); `srvr` says so instead.
zk_ok() {
  local out
  out=$( (exec 3<>"/dev/tcp/127.0.0.1/$zk_port" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null) || return 1
  [[ $out == *"Mode: standalone"* ]]
}

start_zookeeper() {
  zk_ok && return 0
  local jar=/usr/share/java/zookeeper.jar
  [ -f "$jar" ] || { echo "cluster: ZooKeeper is missing: run deploy/deps.sh (apt-get install zookeeper)" >&2; exit 1; }
  mkdir -p "$data/zookeeper"
  # ZooKeeperServerMain: standalone, port and data directory as arguments;
  # the jar's manifest names its dependencies. No admin web server.
  setsid java -Xmx256m -Dzookeeper.admin.enableServer=false -Dzookeeper.4lw.commands.whitelist=srvr \
    -cp "$jar" org.apache.zookeeper.server.ZooKeeperServerMain "$zk_port" "$data/zookeeper" \
    >>"$data/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$zk_pidfile"
  for _ in $(seq 1 60); do zk_ok && return 0; sleep 0.5; done
  echo "cluster: ZooKeeper did not answer on 127.0.0.1:$zk_port within 30s; see $data/zookeeper.log" >&2
  exit 1
}

# node N CMD: runs clickhouse.sh CMD for node N with its ports.
node() {
  local n=$1 off=$((100 * ($1 - 1)))
  # CLICKHOUSE_ADDR names the other server; it must not stand in for these.
  CLICKHOUSE_ADDR='' ALUMINI_CLICKHOUSE_TCP_PORT=$((tcp_base + off)) \
    ALUMINI_CLICKHOUSE_HTTP_PORT=$((tcp_base - 877 + off)) \
    ALUMINI_CLICKHOUSE_TCP_PORT_SECURE=$((tcp_base + 440 + off)) \
    "$here/clickhouse.sh" "$2" "$data/node$n"
}

# replication_config N: what node N adds to config.xml (clickhouse.sh
# writes it into DATA/nodeN; the server merges config.d/*.xml next to it).
replication_config() {
  local n=$1 off=$((100 * ($1 - 1)))
  cat <<XML
<?xml version="1.0"?>
<yandex>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$zk_port</port></node>
    </zookeeper>
    <!-- The macros the sinker's replicated tables name in their paths. -->
    <macros><shard>0$n</shard><replica>r1</replica></macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>$((tcp_base + 9 + off))</interserver_http_port>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <remote_servers>
        <alumini_two>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>$tcp_base</port></replica>
            </shard>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>$((tcp_base + 100))</port></replica>
            </shard>
        </alumini_two>
    </remote_servers>
</yandex>
XML
}

case "$cmd" in
start)
  if [ -n "${CLICKHOUSE_CLUSTER_ADDR:-}" ]; then
    # Someone else's cluster: only say where it is.
    echo "$CLICKHOUSE_CLUSTER_ADDR"
    exit 0
  fi
  start_zookeeper
  for n in 1 2; do
    mkdir -p "$data/node$n/config.d"
    replication_config "$n" >"$data/node$n/config.d/replication.xml"
    node "$n" start >/dev/null
  done
  echo "127.0.0.1:$tcp_base"
  ;;
stop)
  for n in 1 2; do node "$n" stop; done
  if [ -f "$zk_pidfile" ]; then
    # Waited for: a ZooKeeper still answering while it goes would pass
    # the next start's check, and the servers then find none.
    pid=$(cat "$zk_pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$zk_pidfile"
  fi
  ;;
*)
  echo "usage: cluster.sh start|stop DATA_DIR" >&2
  exit 2
  ;;
esac
