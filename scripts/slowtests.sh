#!/usr/bin/env bash
# slowtests.sh: the slowest tests of a `go test -json` run, slowest first.
#
#   go test -race -count=1 -json ./coordinator > /tmp/c.json
#   scripts/slowtests.sh [-n 30] [-s] /tmp/c.json ...
#
# Prints seconds, result, package and test for the N slowest tests (default 30)
# and each package's own time. Subtests are left out unless -s is given (their
# time is already inside their parent's). Reads stdin when no file is given.
set -euo pipefail
n=30 subs=0
while getopts "n:s" o; do
	case $o in
	n) n=$OPTARG ;;
	s) subs=1 ;;
	*) echo "usage: $0 [-n N] [-s] [file.json ...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
command -v jq >/dev/null || { echo "slowtests.sh needs jq" >&2; exit 2; }
# go test -json also carries the build's and the vet's output lines; keep
# only the test events (those with an Action and an Elapsed).
cat "$@" | grep '^{' | jq -r --argjson subs "$subs" '
	select((.Action == "pass" or .Action == "fail" or .Action == "skip") and .Elapsed != null)
	| select(.Test == null or $subs == 1 or (.Test | contains("/") | not))
	| [(.Elapsed | tostring), .Action, .Package, (.Test // "(package)")] | @tsv' |
	sort -t$'\t' -k1,1 -g -r > /tmp/slowtests.$$ || true
echo "packages:"
awk -F'\t' '$4 == "(package)" { printf "  %8.2f s  %-4s %s\n", $1, $2, $3 }' /tmp/slowtests.$$
echo "slowest $n tests:"
awk -F'\t' -v n="$n" '$4 != "(package)" && c < n { c++; printf "  %8.2f s  %-4s %-40s %s\n", $1, $2, $3, $4 }' /tmp/slowtests.$$
rm -f /tmp/slowtests.$$
