#!/bin/sh
# run_bench.sh BENCH_BINARY - the pool vs glibc, jemalloc, mimalloc, tcmalloc.
#
# Runs the binary plainly (malloc = glibc) and under LD_PRELOAD of each peer
# found (malloc = the peer); the pool runs in every process, so its column is
# measured under the same conditions.  Repeats are interleaved (peer order
# rotates each round) because a busy machine swings timings by 5x; the table
# shows medians.  Environment: BENCH_REPEATS (default 5), BENCH_SCALE
# (default 1.0, multiplies the pair counts), BENCH_RAW (file to keep the raw
# lines in).
set -u
bin=${1:?usage: run_bench.sh BENCH_BINARY}
repeats=${BENCH_REPEATS:-5}
scale=${BENCH_SCALE:-1.0}
libdir=/usr/lib/x86_64-linux-gnu
raw=${BENCH_RAW:-$(mktemp "${TMPDIR:-/tmp}/bench_alloc.XXXXXX")}
: > "$raw"

# peers: NAME=LIBRARY for each one installed
peers="glibc="
for cand in jemalloc:libjemalloc.so.2 mimalloc:libmimalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
    name=${cand%%:*}
    lib=$libdir/${cand#*:}
    if [ -e "$lib" ]; then
        peers="$peers $name=$lib"
    else
        echo "note: $name not found ($lib): skipped (apt-get install libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4)"
    fi
done

echo "bench_alloc: $repeats interleaved rounds, scale $scale, peers: $peers"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
round=1
while [ "$round" -le "$repeats" ]; do
    # rotate the order so no peer always runs first (or after the same one)
    set -- $peers
    k=$(( (round - 1) % $# ))
    head=""
    while [ "$k" -gt 0 ]; do
        head="$head $1"
        shift
        k=$((k - 1))
    done
    order="$* $head"
    for entry in $order; do
        name=${entry%%=*}
        lib=${entry#*=}
        if [ -n "$lib" ]; then
            out=$(LD_PRELOAD="$lib" "$bin" "$scale") || { echo "run failed: $name" >&2; exit 1; }
        else
            out=$("$bin" "$scale") || { echo "run failed: $name" >&2; exit 1; }
        fi
        echo "$out" | sed "s/^/$name $round /" >> "$raw"
    done
    echo "  round $round/$repeats done"
    round=$((round + 1))
done

python3 - "$raw" <<'PY'
import statistics, sys
from collections import defaultdict

rows = defaultdict(list)   # (workload, threads, column) -> [(ns, faults)]
pool_res = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 8 and f[2] == "RESULT":
        variant, wl, th, alloc, ns, flt = f[0], f[3], int(f[4]), f[5], float(f[6]), float(f[7])
        col = "pool" if alloc == "pool" else variant
        rows[(wl, th, col)].append((ns, flt))
    elif len(f) >= 3 and f[2] == "POOL" and f[0] == "glibc":
        pool_res.append(" ".join(f[3:]))

cols = [c for c in ("pool", "glibc", "jemalloc", "mimalloc", "tcmalloc")
        if any(k[2] == c for k in rows)]
def med(wl, th, col, i):
    v = rows.get((wl, th, col))
    return statistics.median(x[i] for x in v) if v else None

print()
print("ns per alloc+free pair, per thread; median of %d runs per peer (pool: of every"
      " process, %d); x = ratio to glibc (lower is better)"
      % (min(len(v) for k, v in rows.items() if k[2] != "pool"),
         max(len(v) for k, v in rows.items() if k[2] == "pool")))
hdr = "%-8s %3s" % ("workload", "thr")
for c in cols:
    hdr += " | %9s %6s" % (c, "x")
print(hdr)
print("-" * len(hdr))
for wl in ("small", "nep49", "medium", "large", "drift"):
    for th in (1, 2):
        g = med(wl, th, "glibc", 0)
        line = "%-8s %3d" % (wl, th)
        for c in cols:
            v = med(wl, th, c, 0)
            line += " | %9s %6s" % ("-" if v is None else "%.1f" % v,
                                    "-" if v is None or not g else "%.2f" % (v / g))
        print(line)
print()
print("page faults per pair (median)")
hdr = "%-8s %3s" % ("workload", "thr") + "".join(" | %9s" % c for c in cols)
print(hdr)
print("-" * len(hdr))
for wl in ("small", "nep49", "medium", "large", "drift"):
    for th in (1, 2):
        line = "%-8s %3d" % (wl, th)
        for c in cols:
            v = med(wl, th, c, 1)
            line += " | %9s" % ("-" if v is None else "%.2f" % v)
        print(line)
print()
print("pool after the glibc runs:", pool_res[-1] if pool_res else "n/a")

# the allocator's speed targets, reported (not enforced: timings are not assertions)
def verdict(ok):
    return "MET" if ok else "NOT MET"
print()
print("targets:")
for th in (1, 2):
    p, g, m = med("small", th, "pool", 0), med("small", th, "glibc", 0), med("small", th, "mimalloc", 0)
    print("  small, %d thr: pool %.1f ns vs glibc %.1f ns -> at least as fast: %s" % (th, p, g, verdict(p <= g)))
    if m:
        print("  small, %d thr: pool / mimalloc = %.2f -> within 1.25x: %s" % (th, p / m, verdict(p <= 1.25 * m)))
    if th == 2:
        for wl in ("small", "nep49"):
            one, two = med(wl, 1, "pool", 0), med(wl, 2, "pool", 0)
            print("  %s: a thread's pair on 2 threads / alone = %.2f -> within 1.1x: %s"
                  % (wl, two / one, verdict(two <= 1.1 * one)))
    pl, gl = med("large", th, "pool", 0), med("large", th, "glibc", 0)
    pf = med("large", th, "pool", 1)
    print("  large, %d thr: pool %.3f faults/pair -> zero faults after warm-up: %s" % (th, pf, verdict(pf == 0)))
    print("  large, %d thr: glibc / pool = %.1fx -> >= 5x faster: %s" % (th, gl / pl, verdict(gl >= 5 * pl)))
PY
echo "raw results: $raw"
