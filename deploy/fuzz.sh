#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a _test.go file of a module in
# go.work) for FUZZTIME each, one after the other; seed corpora are in each
# package's testdata/fuzz/<target>. An input that fails is written there
# too, so that it becomes a regression test of `make test`. Prints each
# target's last progress line: executions and new interesting inputs.
# Usage: FUZZTIME=30s deploy/fuzz.sh [target-regexp]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-30s}
only=${1:-.}
modules=$(sed -n 's|^[[:space:]]*\./\(.*\)|\1|p' go.work)
status=0
for f in $(grep -rl --include='*_test.go' '^func Fuzz' $modules | sort); do
	dir=./$(dirname "$f")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		[[ "$dir $target" =~ $only ]] || continue
		log=$(mktemp)
		if go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$dir" >"$log" 2>&1; then
			echo "ok   $dir $target: $(grep '^fuzz: elapsed' "$log" | tail -1)"
		else
			echo "FAIL $dir $target"
			cat "$log"
			status=1
		fi
		rm -f "$log"
	done
done
exit $status
