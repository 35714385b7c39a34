#!/usr/bin/env python3
"""c2c.py - which cache lines do two threads share on the pool's fast path?

A software stand-in for `perf c2c` (this machine's virtual CPU exposes no
hardware events): runs a 2-thread workload of bench_alloc under valgrind's
lackey, which logs every load and store with the thread that made it, and
replays the log through a three-state coherence model (a line is valid in
the caches of the threads that touched it since its last write).  A
coherence miss is an access by one thread to a line another thread wrote
since this one last touched it: what the hardware pays a cache-to-cache
transfer for.  Deterministic (valgrind runs the threads one at a time, in
slices, so the counts are a lower bound of a real run's, but they compare).

    benches/c/c2c.py [--bin benches/c/bin/bench_alloc] [--workload nep49]
                     [--scale 0.01] [--top 15]

Prints the coherence misses per pair, the lines that take them with the
code (function, file:line) that reads and writes them, and a summary by
function.  Only accesses made by code in csrc/ count: the harness's own
lines (its barrier, its slot arrays) are left out.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

# valgrind maps a position-independent executable at this address on amd64
PIE_BASE = 0x108000


def run_lackey(binary, scale, workload, log):
    cmd = ["valgrind", "--tool=lackey", "--trace-mem=yes", "--trace-sched=yes",
           "--log-file=" + log, binary, str(scale), workload, "2", "pool"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"RESULT \S+ 2 pool \S+ \S+", out)
    if not m:
        sys.exit("c2c: the workload printed no RESULT:\n" + out)
    return out


def symbolize(binary, addrs):
    """{runtime address: (function, file:line)} for addresses in the binary."""
    rel = [a - PIE_BASE for a in addrs]
    proc = subprocess.run(["addr2line", "-f", "-C", "-e", binary] + ["%#x" % a for a in rel],
                          check=True, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    out = {}
    for i, a in enumerate(addrs):
        fn, loc = lines[2 * i], lines[2 * i + 1]
        out[a] = (fn, re.sub(r" \(discriminator \d+\)", "", loc))
    return out


def parse(log):
    """Per line: accesses per (thread, R/W) and instruction addresses; and the
    coherence-miss replay."""
    sched = re.compile(r"SCHED\[(\d+)\]:\s+acquired lock")
    cur = None
    instr = 0
    per_line = collections.defaultdict(collections.Counter)  # line -> (tid, kind)
    code = collections.defaultdict(collections.Counter)      # line -> (instr, kind)
    valid = {}      # line -> set of threads holding a valid copy
    misses = collections.Counter()   # line -> coherence misses
    miss_code = collections.Counter()  # instr -> coherence misses it took
    with open(log, errors="replace") as f:
        for ln in f:
            c = ln[:2]
            if c == "I ":
                instr = int(ln[3:].split(",", 1)[0], 16)
                continue
            if c in (" L", " S", " M"):
                if cur is None:
                    continue
                line = int(ln[3:].split(",", 1)[0], 16) >> 6
                kind = "R" if c == " L" else "W"
                per_line[line][(cur, kind)] += 1
                code[line][(instr, kind)] += 1
                holders = valid.get(line)
                if holders is not None and cur not in holders and holders:
                    misses[line] += 1
                    miss_code[instr] += 1
                if kind == "W":
                    valid[line] = {cur}
                elif holders is None:
                    valid[line] = {cur}
                else:
                    holders.add(cur)
                continue
            if "SCHED[" in ln:
                m = sched.search(ln)
                if m:
                    cur = int(m.group(1))
    return per_line, code, misses, miss_code


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "bin", "bench_alloc"))
    ap.add_argument("--workload", default="nep49")
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--log", help="reuse (or keep) this lackey log")
    a = ap.parse_args()
    pairs = int(2000000 * a.scale)
    log = a.log or tempfile.mktemp(prefix="c2c.", suffix=".log")
    if not (a.log and os.path.exists(a.log)):
        run_lackey(a.bin, a.scale, a.workload, log)
    per_line, code, misses, miss_code = parse(log)
    if not a.log:
        os.unlink(log)
    instrs = {i for c in code.values() for (i, _) in c}
    core = {}
    syms = symbolize(a.bin, sorted(i for i in instrs if i >= PIE_BASE and i < PIE_BASE + (64 << 20)))
    for i, (fn, loc) in syms.items():
        if "/csrc/" in loc:
            core[i] = (fn, loc.split("/csrc/", 1)[1])
    # the two busiest threads are the workers
    totals = collections.Counter()
    for c in per_line.values():
        for (t, _), n in c.items():
            totals[t] += n
    workers = [t for t, _ in totals.most_common(2)]
    # A shared line: both workers touch it, one of them writes it, and the
    # core's code is among what touches it.  Its transfer bound is what the
    # hardware could pay with the threads truly running at once (not in
    # valgrind's slices): every write may take the line from the other
    # thread, and every access of the other thread may take it back, so at
    # most min(writes, accesses of either thread) round trips.
    rows = []
    for line, c in per_line.items():
        acc = {t: (c[(t, "R")], c[(t, "W")]) for t in workers}
        if min(r + w for r, w in acc.values()) == 0 or sum(w for _, w in acc.values()) == 0:
            continue
        if not any(i in core for (i, _) in code[line]):
            continue
        bound = min([sum(w for _, w in acc.values())] + [r + w for r, w in acc.values()])
        rows.append((bound, misses[line], line, acc))
    rows.sort(reverse=True)
    contended = sum(r[0] for r in rows)
    total = sum(r[1] for r in rows)
    per = 2 * pairs * 1.1
    print("c2c: %s, 2 threads x %d timed pairs (+10%% warm-up), lines the core's code touches"
          % (a.workload, pairs))
    print("shared lines (both threads, one writing): %d" % len(rows))
    print("transfer bound on them: %d (%.3f per pair per thread)" % (contended, contended / per))
    print("coherence misses in valgrind's slices: %d (%.4f per pair per thread)" % (total, total / per))
    for cont, n, line, acc in rows[: a.top]:
        print("\n%#x  transfer bound %d  misses %d  reads/writes per thread %s" % (line << 6, cont, n, acc))
        for (i, kind), k in code[line].most_common(4):
            fn, loc = core.get(i, syms.get(i, ("?", "?")))
            print("    %s %6d  %s  %s" % (kind, k, fn, loc))
    by_fn = collections.Counter()
    for i, n in miss_code.items():
        if i in core:
            by_fn["%s %s" % core[i]] += n
    by_fn = collections.Counter()
    for cont, n, line, acc in rows:
        touched = sum(code[line].values())
        for (i, kind), k in code[line].items():
            if i in core:
                by_fn["%s %s %s" % ((kind,) + core[i])] += cont * k / touched
    print("\ntransfer bound by code location (each line's bound shared by its accesses):")
    for k, n in by_fn.most_common(a.top):
        print("  %9.0f  %s" % (n, k))
    by_fn = collections.Counter()
    print("\nmisses taken by code location:")
    for k, n in by_fn.most_common(a.top):
        print("  %7d  %s" % (n, k))


if __name__ == "__main__":
    main()
