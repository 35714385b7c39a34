"""Where the demo's memory figures come from, measured outside the demo.

    python benches/demo_memory_probe.py peaks    # bare-loop peaks vs the demo child's
    python benches/demo_memory_probe.py gap      # the MLP's RSS beyond baseline + pool resident

``peaks`` runs each workload's loop with nothing else in it (values kept in a
list made before the loop, the kernel's ru_maxrss read once at the end) under
numpy's default allocator and under mempool, each in a fresh process, next to
the demo child's peak for the same steps: the child must not move glibc's
peak (its bookkeeping once pinned glibc's heap: 354.7 MB against 335 MB).
It also counts the steps in which the pool's per-step peak is above glibc's.

``gap`` runs the MLP under mempool and splits what the process holds beyond
its import baseline + the pool's resident estimate at the end of the loop by
kind of mapping (``demo.child.memory_map``), for 1 and 2 BLAS threads.
Deterministic counters only (RSS, ru_maxrss); no timings.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "mempool" / "tools" / "demo" / "child.py"
STEPS = {"mlp": 120, "temporaries": 150}
MB = 1e6

BARE = r"""
import importlib.util, json, resource, sys
# by path, as the demo child loads it: the default row imports no mempool
spec = importlib.util.spec_from_file_location(
    "workloads", sys.argv[1] + "/mempool/tools/demo/workloads.py")
workloads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workloads)
name, steps, use_pool = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if use_pool:
    sys.path.insert(0, sys.argv[1])
    import mempool
    ctx = mempool.use(mempool.default_pool())   # kept: dropping it leaves the pool
    ctx.__enter__()
wl = workloads.make(name, steps, 0)
values = [0.0] * steps
for i in range(steps):
    values[i] = wl.step(i)
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

GAP = r"""
import gc, json, sys
sys.path.insert(0, sys.argv[1])
import mempool
from mempool.tools.demo import workloads
from mempool.tools.demo.child import RssReader, memory_map
pool = mempool.default_pool()
rss = RssReader()
gc.collect()
before, base = memory_map(), rss()
with mempool.use(pool):
    wl = workloads.make("mlp", 120, 0)
    for i in range(120):
        wl.step(i)
    after, end, resident = memory_map(), rss(), pool.stats().resident_bytes
print(json.dumps({"base": base, "end": end, "resident": resident, "before": before,
                  "after": after}))
"""


def _python(code: str, *args: str, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), *args], check=True,
                         capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(name: str, steps: int, use_pool: bool) -> dict:
    cfg = {"workload": name, "steps": steps, "seed": 0, "batch_range": [32, 512],
           "settle_s": 0.0, "round": 0, "use_pool": use_pool, "floor": False}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, str(CHILD), json.dumps(cfg), str(path)], check=True,
                       capture_output=True, env=env)
        return json.loads(path.read_text())


def peaks() -> None:
    """Bare-loop and demo-child peaks, default and mempool."""
    for name, steps in STEPS.items():
        recs = {}
        for use_pool in (False, True):
            row = "mempool" if use_pool else "default"
            bare = _python(BARE, name, str(steps), "1" if use_pool else "0")["peak"]
            recs[row] = _child(name, steps, use_pool)
            print(f"{name:12s} {row:8s} bare loop peak {bare / MB:6.1f} MB, demo child "
                  f"{recs[row]['peak_rss'] / MB:6.1f} MB")
        d, m = recs["default"].get("step_peak_rss"), recs["mempool"].get("step_peak_rss")
        if d and m:
            above = sum(a > b for a, b in zip(m, d))
            print(f"{name:12s} mempool's per-step peak above the default's in {above} of "
                  f"{len(d)} steps")


def gap() -> None:
    """The MLP's RSS beyond baseline + pool resident, by kind of mapping."""
    for threads in ("1", "2"):
        env = dict(os.environ, **{k: threads for k in
                                  ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                   "MKL_NUM_THREADS")})
        r = _python(GAP, env=env)
        grew = {k: (r["after"][k] - r["before"][k]) / MB for k in r["before"]}
        total = (r["end"] - r["base"] - r["resident"]) / MB
        outside = grew["anon"] + grew["other"] - r["resident"] / MB
        print(f"BLAS threads {threads}: RSS - baseline - pool resident = {total:.1f} MB: "
              f"anonymous outside the pool {outside:+.1f}, library files {grew['file']:+.1f}, "
              f"malloc heap {grew['heap']:+.1f}")


if __name__ == "__main__":
    {"peaks": peaks, "gap": gap}[sys.argv[1] if len(sys.argv) > 1 else "peaks"]()
