"""What recording a pool's history costs: the demo's MLP loop with and
without ``mempool.history.record(stacks=8)``, and a million events recorded
and dumped.

    python benches/history_overhead.py [--rounds 5] [--steps 60] [--events 1000000]

MLP: each round runs both modes, each in a fresh process, in alternating
order; a process builds the demo's MLP (mempool.tools.demo.workloads.MLP,
the demo's seed and batch range), warms up, then times its steps inside
``mempool.use(pool)``.  Reported: the median over rounds of each mode's
median step time, their ratio (target <= 1.10), the events per step, and
memory per event (the ring's 32 bytes; interned stacks are counted apart).

Million events: one process records 1 M allocation events (500 k arrays
made and freed, 8 frames each) into a ring of 1 M, then dumps the snapshot
as JSON: the time of each, the file's size, and its gzip size.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
import numpy as np
import mempool
from mempool import history
from mempool.tools.demo.workloads import MLP
mode, steps, warm = sys.argv[1], int(sys.argv[2]), 3
pool = mempool.Pool()
wl = MLP(steps + warm, seed=0)
times = []
rec = history.record(pool, stacks=8) if mode == "on" else None
with mempool.use(pool):
    if rec: rec.start()
    for i in range(steps + warm):
        t0 = time.perf_counter_ns()
        wl.step(i)
        if i >= warm:
            times.append(time.perf_counter_ns() - t0)
    if rec: rec.stop()
out = {"median_ns": sorted(times)[len(times) // 2]}
if rec:
    info = rec.info()
    out["events_per_step"] = info["recorded"] / (steps + warm)
    out["stack_tables"] = list(mempool._core.stack_table_sizes())
print(json.dumps(out))
"""

MILLION = r"""
import json, os, sys, time
import numpy as np
import mempool
from mempool import history
n, path = int(sys.argv[1]), sys.argv[2]
pool = mempool.Pool()
def make(k):
    for _ in range(k):
        np.empty(16)
with mempool.use(pool):
    rec = history.record(pool, stacks=8, max_entries=n)
    t0 = time.perf_counter()
    with rec:
        make(n // 2)
    t1 = time.perf_counter()
    snap = pool.snapshot()
    t2 = time.perf_counter()
    snap.dump(path)
    t3 = time.perf_counter()
with mempool.use(pool):
    base = time.perf_counter()
    make(n // 2)
    base = time.perf_counter() - base
print(json.dumps({"events": snap.history["events"]["count"], "dropped": snap.history["dropped"],
                  "record_s": t1 - t0, "unrecorded_s": base, "snapshot_s": t2 - t1,
                  "dump_s": t3 - t2, "bytes": os.path.getsize(path)}))
"""


def _child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True,
                         capture_output=True, text=True, env={**os.environ,
                                                              "OPENBLAS_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    runs = {"off": [], "on": []}
    extra = {}
    for r in range(args.rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        for mode in order:
            res = _child(CHILD, mode, str(args.steps))
            runs[mode].append(res["median_ns"])
            if mode == "on":
                extra = res
        print(f"round {r + 1}: off {runs['off'][-1] / 1e6:.2f} ms/step, "
              f"on {runs['on'][-1] / 1e6:.2f} ms/step", flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(f"MLP step, median of {args.rounds} interleaved rounds: off {off / 1e6:.2f} ms, "
          f"recording (stacks=8) {on / 1e6:.2f} ms: {on / off:.3f}x (target <= 1.10x)")
    print(f"  {extra.get('events_per_step', 0):.0f} events per step; 32 bytes per event in the "
          f"ring; interned (stacks, stack frames, frames, refused): {extra.get('stack_tables')}")
    if args.events:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "million.json")
            m = _child(MILLION, str(args.events), path)
            with open(path, "rb") as f:
                gz = len(gzip.compress(f.read(), 6))
        print(f"{m['events']} events recorded ({m['dropped']} dropped) in {m['record_s']:.2f} s "
              f"({m['unrecorded_s']:.2f} s for the same arrays unrecorded); snapshot "
              f"{m['snapshot_s']:.2f} s, dump {m['dump_s']:.2f} s, JSON {m['bytes'] / 2**20:.1f} "
              f"MiB ({gz / 2**20:.1f} MiB gzipped)")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
