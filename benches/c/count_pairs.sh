#!/bin/sh
# count_pairs.sh BINARY SIZE... - callgrind instructions per mp_alloc+mp_free
# pair (MODE 0, default: free with size 0 as numpy's handler does; 1: with the
# size; 2: through the NEP 49 entry points), from two runs whose pair counts
# differ by PAIRS (default 20000), so start-up cancels out.
set -eu
bin=${1:?usage: count_pairs.sh BINARY SIZE...}
shift
pairs=${PAIRS:-20000}
tmp=$(mktemp -d)
count() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$1" "$2" "${MODE:-0}" \
        2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for size in "$@"; do
    a=$(count "$size" "$pairs")
    b=$(count "$size" $((2 * pairs)))
    echo "size $size: $(( (b - a) / pairs )) instructions per pair"
done
rm -rf "$tmp"
