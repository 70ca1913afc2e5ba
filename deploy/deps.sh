#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing Alumini
# need and a fresh Debian/Ubuntu machine lacks. Go itself must be there.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v curl >/dev/null || need+=(curl)
# The local ClickHouse server gets a self-signed certificate for its TLS port.
command -v openssl >/dev/null || need+=(openssl)
# Headless Chromium drives the browser tests (tracker script, dashboard).
command -v chromium >/dev/null || need+=(chromium)
# ZooKeeper (with Java) coordinates the one-node cluster the cluster-mode
# tests run on (deploy/clickhouse/cluster.sh).
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
# Node.js runs chdb, a current ClickHouse engine, to check our SQL on it.
command -v npm >/dev/null || need+=(nodejs npm)
# promtool checks and unit-tests the alert rules in deploy/prometheus; the
# e2e test runs prometheus itself against the pipeline.
{ command -v promtool && command -v prometheus; } >/dev/null || need+=(prometheus)
# nginx balances two collectors in the e2e rolling-restart test, which runs
# its own on free loopback ports; the system service is not used.
[ -x /usr/sbin/nginx ] || need+=(nginx)
if ((${#need[@]} > 0)); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "deps: missing Debian packages: ${need[*]}" >&2
  echo "deps: [1/2] apt-get update" >&2
  start=$SECONDS
  $sudo apt-get update -qq
  echo "deps: [2/2] apt-get install (a minute or two on a fresh machine; each package is named as it is set up)" >&2
  # dpkg's "Setting up" lines name each package as it lands; the rest of
  # apt's output is noise here.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" |
    { grep --line-buffered -E '^Setting up ' || true; } | sed -u 's/^/deps:     /' >&2
  echo "deps: Debian packages installed in $((SECONDS - start))s" >&2
fi

sqlcheck="$(dirname "$0")/sqlcheck"
if [ ! -d "$sqlcheck/node_modules/chdb" ]; then
  echo "deps: npm install in deploy/sqlcheck: chdb, a current ClickHouse engine for checking our SQL (about 550 MB on disk, a minute)" >&2
  # npm install, not npm ci: the lock file lists only the Linux x64 build of
  # chdb's native library, so npm ci calls it out of sync with chdb's other
  # optional platform builds; npm install keeps to the locked versions.
  npm install --prefix "$sqlcheck" --no-audit --no-fund --loglevel=error >/dev/null
fi

sdks="$(dirname "$0")/../e2e/sdk"
if [ ! -d "$sdks/node_modules/@segment/analytics-next" ] || [ ! -d "$sdks/node_modules/@rudderstack/rudder-sdk-node" ] || [ ! -d "$sdks/node_modules/@segment/analytics-node" ]; then
  echo "deps: installing the official Segment-spec SDKs the e2e test sends through" >&2
  npm ci --prefix "$sdks" --no-audit --no-fund --loglevel=error >/dev/null
fi

compat="$(dirname "$0")/../e2e/compat"
if [ ! -d "$compat/node_modules/@plausible-analytics/tracker" ] || [ ! -f "$compat/node_modules/umami-tracker/index.js" ]; then
  echo "deps: npm ci in e2e/compat: Plausible's and Umami's trackers for the compatibility test (under 1 MB)" >&2
  npm ci --prefix "$compat" --no-audit --no-fund --loglevel=error >/dev/null
  "$compat/fetch-umami-tracker.sh"
fi
