#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing Alumini
# need and a fresh Debian/Ubuntu machine lacks. Go itself must be there.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v curl >/dev/null || need+=(curl)
# Headless Chromium drives the browser tests (tracker script, dashboard).
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]} == 0)); then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "deps: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
