#!/usr/bin/env python3
"""small_l1.py - instructions and L1 data misses per np.empty(k) + drop.

Deterministic where the demo's per-size table (a timing) is not on a shared
machine: the demo's small loop under valgrind's callgrind with its cache
simulation (the host's L1 geometry), once with N and once with 3N ops, the
difference divided by 2N; PYTHONHASHSEED=0 so the interpreter's dictionaries
probe the same way each run.  Each allocator in its own process.

    python benches/small_l1.py [--sizes 8,64,512,1024,4096] [--ops 20000]

Prints, per byte size, Ir and D1 misses (read + write) per op for numpy's
default handler and for the pool (mempool.install()).
"""
import argparse
import os
import subprocess
import sys
import tempfile

LOOP = """
import sys
import numpy as np
if sys.argv[1] == "pool":
    import mempool
    mempool.install()
empty = np.empty
k = max(1, int(sys.argv[2]) // 8)
for _ in range(1000):
    empty(k)
for _ in range(int(sys.argv[3])):
    empty(k)
"""


def totals(mode, size, ops, tmp):
    """callgrind's totals line (Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw)."""
    out = os.path.join(tmp, "cg.out")
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", "--cache-sim=yes",
                    "--callgrind-out-file=" + out, sys.executable, "-c", LOOP,
                    mode, str(size), str(ops)],
                   check=True, env=env, capture_output=True)
    for line in open(out):
        if line.startswith("totals:"):
            return [int(x) for x in line.split()[1:]]
    raise RuntimeError("no totals in callgrind output")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="8,64,512,1024,4096")
    ap.add_argument("--ops", type=int, default=20000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("%6s  %-8s %8s %10s" % ("bytes", "handler", "Ir/op", "D1miss/op"))
        for size in (int(s) for s in a.sizes.split(",")):
            for mode in ("default", "pool"):
                lo = totals(mode, size, a.ops, tmp)
                hi = totals(mode, size, 3 * a.ops, tmp)
                d = [(y - x) / (2 * a.ops) for x, y in zip(lo, hi)]
                print("%6d  %-8s %8.1f %10.2f" % (size, mode, d[0], d[4] + d[5]))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
