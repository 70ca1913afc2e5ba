#!/usr/bin/env bash
# Offline vulnerability scan: builds the Go vulnerability database from the
# Go module golang.org/x/vulndb (its OSV files, indexed by the module's own
# cmd/indexdb) into $1 once per database version, then runs govulncheck
# against it over every module of the workspace. govulncheck fails when
# called code (the symbols our packages reach) is affected.
# Usage: deploy/vulncheck.sh DBDIR PATTERN...
set -euo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK_VERSION=v1.10.0

mkdir -p "$1"
db="$(cd "$1" && pwd)/$VULNDB_VERSION"
shift
if [ ! -f "$db/index/db.json" ]; then
	echo "vulncheck: building the database from golang.org/x/vulndb@$VULNDB_VERSION into $db"
	src=$(GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	rm -rf "$db.tmp"
	go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$db.tmp"
	mv "$db.tmp" "$db"
fi
# govulncheck type-checks the standard library of the go command it finds
# on PATH, and must be built by that same release: run both from the
# toolchain the workspace selects (go.work's toolchain line), not from a
# go command that would switch toolchains underneath it.
goroot=$(go env GOROOT)
export PATH="$goroot/bin:$PATH" GOTOOLCHAIN=local
go version
# From one module of the workspace, the patterns reach every module.
cd collector
go run "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" -db "file://$db" "$@"
