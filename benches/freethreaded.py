"""Threads that allocate: N threads in one process, each running steps of
drifting temporaries, small-array bookkeeping and a short MLP step, under
numpy's default handler, mempool (installed), and jemalloc / mimalloc
preloaded (LD_PRELOAD), each in its own process, rounds interleaved.

Built for a free-threaded interpreter (scripts/build_freethreaded_python.sh),
where the threads really run at once; ``--mode processes`` runs the same N
workers as N one-thread processes instead (the way to scale numpy code with
the GIL), so threads on the free-threaded build can be set against
processes on a GIL build (``--python`` names the interpreter of each mode).

    PY_FT=$(bash scripts/build_freethreaded_python.sh)
    $PY_FT -m venv /tmp/ft && /tmp/ft/bin/pip install numpy && /tmp/ft/bin/pip install -e .
    /tmp/ft/bin/python benches/freethreaded.py --threads 1 2 --rounds 5
    /tmp/ft/bin/python benches/freethreaded.py --threads 2 --rounds 5 \\
        --compare-processes /path/to/gil/venv/bin/python

Printed per allocator and N: steps per second (median of rounds, and over
the pool's), the scaling from one thread, minor page faults per step, peak
RSS (summed over the processes in ``processes`` mode) and CPU time per step
(user + system, all threads: the steadier figure on a loaded machine, where
steps per second measure the scheduler's share more than the allocator).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALLOCATORS = ("default", "mempool", "jemalloc", "mimalloc")
PRELOAD = {"jemalloc": "libjemalloc.so.2", "mimalloc": "libmimalloc.so.2"}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


# ------------------------------------------------------------- workload --

class Worker:
    """One thread's state: its own weights and inputs (nothing shared)."""

    def __init__(self, seed: int) -> None:
        import numpy as np
        self.np = np
        rng = np.random.default_rng(seed)
        self.base = rng.standard_normal(400_000)            # 3.2 MB
        self.x = rng.standard_normal((128, 256))
        self.y = rng.standard_normal((128, 10))
        self.w1 = rng.standard_normal((256, 256)) * 0.05
        self.w2 = rng.standard_normal((256, 10)) * 0.05
        self.k = 0

    def step(self) -> float:
        """One step: the three parts, sizes drifting with the step count."""
        np, k = self.np, self.k
        self.k += 1
        # drifting temporaries: 0.8-3.2 MB float64 arrays, new sizes every step
        n = int(250_000 * (1.0 + 0.6 * math.sin(k / 3.0)))
        t = self.base[:n] * 1.5 + self.base[:n]
        t = np.sqrt(np.abs(t)) - t * 0.5
        total = float(t.sum())
        # small-array bookkeeping: many arrays of 1-64 elements
        parts = [np.arange(1 + (k + j) % 64, dtype=np.float64) for j in range(60)]
        idx = np.concatenate(parts)
        total += float(idx[::7].sum()) + float(np.array([p.size for p in parts]).mean())
        # a short MLP step, batch 32-96 rows
        b = 32 + (k * 7) % 65
        x, y = self.x[:b], self.y[:b]
        h = np.tanh(x @ self.w1)
        out = h @ self.w2
        grad = (out - y) / b
        dw2 = h.T @ grad
        dh = (grad @ self.w2.T) * (1.0 - h * h)
        dw1 = x.T @ dh
        self.w1 -= 0.01 * dw1
        self.w2 -= 0.01 * dw2
        return total + float(grad.sum())


def child(threads: int, seconds: float, warmup: float, allocator: str) -> dict:
    """Run ``threads`` workers for ``seconds`` after ``warmup``; the counts."""
    import numpy as np
    if allocator == "mempool":
        import mempool
        mempool.install()     # every thread started below allocates from it
    workers = [Worker(seed) for seed in range(threads)]
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    window = {}

    def run(i: int) -> None:
        w = workers[i]
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            w.step()
        barrier.wait()               # all warm: the measured window opens
        end = window["end"]
        n = 0
        while time.perf_counter() < end:
            w.step()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    window["end"] = float("inf")
    barrier_start = None
    # open the window once every worker is warm
    while barrier.n_waiting < threads:
        time.sleep(0.001)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    barrier_start = time.perf_counter()
    window["end"] = barrier_start + seconds
    barrier.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - barrier_start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    steps = sum(counts)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return {"steps": steps, "elapsed": elapsed, "steps_per_s": steps / elapsed,
            "minflt": ru1.ru_minflt - ru0.ru_minflt, "maxrss_kb": ru1.ru_maxrss,
            "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "gil": gil, "numpy": np.__version__, "python": sys.version.split()[0]}


# --------------------------------------------------------------- driver --

def find_lib(name: str):
    for d in LIB_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return None


def child_env(allocator: str) -> dict:
    env = dict(os.environ)
    for var in ("LD_PRELOAD", "MEMPOOL_INSTALL", "PYTHON_GIL"):
        env.pop(var, None)
    # one BLAS thread per worker: N threads are N BLAS callers already
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if allocator in PRELOAD:
        env["LD_PRELOAD"] = find_lib(PRELOAD[allocator])
    return env


def launch(python: str, allocator: str, threads: int, args) -> subprocess.Popen:
    cmd = [python, os.path.abspath(__file__), "--child", allocator, str(threads),
           str(args.seconds), str(args.warmup)]
    return subprocess.Popen(cmd, env=child_env(allocator), cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def measure(python: str, allocator: str, n: int, mode: str, args) -> dict:
    """One run: N threads in one process, or N one-thread processes at once."""
    procs = [launch(python, allocator, n, args)] if mode == "threads" else \
        [launch(python, allocator, 1, args) for _ in range(n)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=args.seconds * 10 + 120)
        if p.returncode != 0:
            raise SystemExit(f"child {allocator} n={n} {mode} failed ({p.returncode})")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    steps = sum(o["steps"] for o in outs)
    return {"steps_per_s": sum(o["steps_per_s"] for o in outs),
            "faults_per_step": sum(o["minflt"] for o in outs) / max(1, steps),
            "peak_rss_mb": sum(o["maxrss_kb"] for o in outs) / 1024,
            "cpu_per_step_ms": 1000 * sum(o["cpu_s"] for o in outs) / max(1, steps),
            "gil": any(o["gil"] for o in outs), "python": outs[0]["python"],
            "numpy": outs[0]["numpy"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=ALLOCATORS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--compare-processes", metavar="PYTHON",
                    help="also run N one-thread processes on this interpreter "
                         "(a GIL build) for every N")
    ap.add_argument("--json", help="write every run here")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        alloc, n, seconds, warmup = args.child
        print(json.dumps(child(int(n), float(seconds), float(warmup), alloc)))
        return 0

    allocators = [a for a in args.allocators if a not in PRELOAD or find_lib(PRELOAD[a])]
    for a in set(args.allocators) - set(allocators):
        print(f"{a}: not installed (apt-get install libjemalloc2 libmimalloc2.0), left out")
    configs = [(sys.executable, a, n, "threads") for n in args.threads for a in allocators]
    if args.compare_processes:
        configs += [(args.compare_processes, a, n, "processes")
                    for n in args.threads for a in allocators]
    runs = {c: [] for c in configs}
    loads = []
    rng = random.Random(1)
    for r in range(args.rounds):
        order = list(configs)
        rng.shuffle(order)
        loads.append(os.getloadavg()[0])
        for c in order:
            runs[c].append(measure(c[0], c[1], c[2], c[3], args))
        print(f"round {r + 1}/{args.rounds} done (load {loads[-1]:.2f})", file=sys.stderr)

    def med(c, key):
        return statistics.median(x[key] for x in runs[c])

    print(f"load average (1 min) at the rounds' starts: "
          f"{min(loads):.2f}-{max(loads):.2f}; {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'mode':9} {'python':9} {'N':>2} {'allocator':9} {'steps/s':>8} "
          f"{'x pool':>7} {'x N=1':>6} {'faults/step':>11} {'peak RSS MB':>11} {'CPU ms/step':>11} "
          f"{'GIL':>4}")
    for c in configs:
        python, alloc, n, mode = c
        pool_c = (python, "mempool", n, mode)
        one = (python, alloc, 1, mode)   # no N=1 run: no scaling figure (nan), not a guess
        sps = med(c, "steps_per_s")
        ratio_pool = sps / med(pool_c, "steps_per_s") if pool_c in runs else float("nan")
        scale = sps / med(one, "steps_per_s") if one in runs else float("nan")
        r0 = runs[c][0]
        print(f"{mode:9} {r0['python']:9} {n:>2} {alloc:9} {sps:8.1f} {ratio_pool:7.2f} "
              f"{scale:6.2f} {med(c, 'faults_per_step'):11.1f} {med(c, 'peak_rss_mb'):11.1f} "
              f"{med(c, 'cpu_per_step_ms'):11.2f} {'on' if r0['gil'] else 'off':>4}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"loads": loads, "runs": [{"python": c[0], "allocator": c[1], "n": c[2],
                                                 "mode": c[3], "runs": v}
                                                for c, v in runs.items()]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
