"""Unmanaged memory of Dask workers under numpy's default allocator (with
Dask's MALLOC_TRIM_THRESHOLD_), jemalloc preloaded, and mempool.

A LocalCluster of 2 worker processes x 2 threads (127.0.0.1) runs phases of
a dask.array workload whose chunk sizes drift from phase to phase: persist
an array, standardise it, sort its blocks, reduce, drop everything, idle.
The scheduler's view of each worker (process memory minus managed memory:
Dask's "unmanaged") is sampled through the run; the figure reported per
phase is the unmanaged memory above the worker's own level after a small warm-up phase
(which imports the code the phases run), at the end of the idle period
after the phase.  Each allocator runs in its own
driver process with a fresh cluster, allocators interleaved round by round.

    pip install -e '.[dask-bench]'; apt-get install libjemalloc2
    python benches/dask_unmanaged.py --rounds 3 --plot docs/dask-unmanaged.png
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ALLOCATORS = ("default", "jemalloc", "mempool")
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
# (chunk rows, columns) per phase: 8-byte floats, so a chunk is rows*cols*8
# bytes; the sizes drift up and down (1 to 12 MiB) at ~200 MiB per phase.
PHASES = [(256, 500), (2000, 500), (512, 500), (1000, 1000), (160, 1000), (750, 2000)]
TOTAL_BYTES = 200 << 20
IDLE = 3.0


def _memory_on_scheduler(dask_scheduler=None):
    return {addr: (ws.memory.process, ws.memory.managed)
            for addr, ws in dask_scheduler.workers.items()}


def _worker_memory(client):
    """{worker address: (process memory, managed memory)} as the scheduler
    sees them (from the workers' heartbeats)."""
    return client.run_on_scheduler(_memory_on_scheduler)


def _usage():
    """(user+system CPU seconds, minor page faults) of this worker process."""
    import resource
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_minflt


def _phase(client, rows, cols, total_bytes=None):
    import dask.array as da
    total_bytes = TOTAL_BYTES if total_bytes is None else total_bytes
    n = max(rows, (total_bytes // (cols * 8)) // rows * rows)
    x = da.random.random((n, cols), chunks=(rows, cols)).persist()
    y = (x - x.mean(axis=0)) / x.std(axis=0)
    total = client.compute((y[:, :cols // 2] * 2.0).sum() + (y ** 2).mean())
    value = float(total.result())
    del x, y, total
    return value


def run_one(allocator: str) -> dict:
    """One driver process: a fresh cluster under ``allocator``; returns the
    samples and per-phase figures as a dict."""
    import dask
    import distributed
    env = {}
    if allocator == "jemalloc":
        env["LD_PRELOAD"] = JEMALLOC
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {
            **dask.config.get("distributed.nanny.pre-spawn-environ"), **env},
            "distributed.worker.memory.spill": False,   # measure, do not spill
            "distributed.worker.memory.target": False}):
        cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=2,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                           worker_dashboard_address="127.0.0.1:0")
        client = distributed.Client(cluster, timeout=60)
    try:
        client.wait_for_workers(2, timeout=60)
        if allocator == "mempool":
            from mempool.dask import MempoolPlugin
            client.register_plugin(MempoolPlugin())
        # warm-up: the workers import what the phases use (dask.array,
        # numpy.random, ...), so the start-up level includes the code
        _phase(client, 64, 100, 4 << 20)
        time.sleep(2.5)                         # a heartbeat or two
        base = {a: p - m for a, (p, m) in _worker_memory(client).items()}
        samples = []   # (t, {addr: unmanaged above base}), every 0.25 s
        t0 = time.monotonic()
        stop = threading.Event()

        def sampler():
            while not stop.wait(0.25):
                try:
                    mem = _worker_memory(client)
                except Exception as exc:    # keep sampling; say why a point is missing
                    print(f"sample failed: {exc!r}", file=sys.stderr)
                    continue
                samples.append((time.monotonic() - t0,
                                {a: p - m - base[a] for a, (p, m) in mem.items() if a in base}))

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        usage0 = client.run(_usage)
        phases = []
        busy = 0.0
        for rows, cols in PHASES:
            start = time.monotonic()
            _phase(client, rows, cols)
            busy += time.monotonic() - start
            time.sleep(IDLE)
            after = samples[-1][1]
            phases.append({"chunk_bytes": rows * cols * 8,
                           "unmanaged_after": after,
                           "peak_unmanaged": max(max(s[1].values()) for s in samples)})
        stop.set()
        thread.join()
        usage1 = client.run(_usage)
        cpu = sum(usage1[a][0] - usage0[a][0] for a in usage0)
        faults = sum(usage1[a][1] - usage0[a][1] for a in usage0)
        return {"allocator": allocator, "busy_seconds": busy, "worker_cpu_seconds": cpu,
                "worker_minor_faults": faults, "phases": phases,
                "samples": samples, "base": base}
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


def _child(allocator: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--one", allocator],
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"{allocator} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mib(x):
    return x / (1 << 20)


def summarize(runs: list) -> str:
    """A text table: per allocator, median over rounds of the busy time,
    the workers' CPU time (ratios to default) and minor page faults, and of
    the unmanaged memory after each phase (mean
    of the two workers, MiB above the start-up level)."""
    lines = []
    by = {a: [r for r in runs if r["allocator"] == a] for a in ALLOCATORS}
    ref = statistics.median(r["busy_seconds"] for r in by["default"]) if by["default"] else None
    cpu_ref = (statistics.median(r["worker_cpu_seconds"] for r in by["default"])
               if by["default"] else None)
    header = "allocator   busy s  ratio  cpu s  ratio  faults  " + "  ".join(
        f"ph{i + 1} {_mib(p[0] * p[1] * 8):5.2f}M" for i, p in enumerate(PHASES)) + "   worst"
    lines.append("unmanaged MiB above start-up, per worker (mean of 2), after each phase's idle")
    lines.append(header)
    for a, rs in by.items():
        if not rs:
            continue
        busy = statistics.median(r["busy_seconds"] for r in rs)
        cpu = statistics.median(r["worker_cpu_seconds"] for r in rs)
        faults = statistics.median(r["worker_minor_faults"] for r in rs)
        per_phase = [statistics.median(statistics.mean(r["phases"][i]["unmanaged_after"].values())
                                       for r in rs) for i in range(len(PHASES))]
        worst = max(max(r["phases"][i]["unmanaged_after"].values())
                    for r in rs for i in range(len(PHASES)))
        ratio = f"{busy / ref:5.2f}" if ref else "  n/a"
        cpu_ratio = f"{cpu / cpu_ref:5.2f}" if cpu_ref else "  n/a"
        lines.append(f"{a:10s} {busy:7.1f}  {ratio}  {cpu:5.1f}  {cpu_ratio}  {faults:6.0f}  " + "  ".join(
            f"{_mib(v):11.1f}" for v in per_phase) + f"  {_mib(worst):6.1f}")
    return "\n".join(lines)


def plot(runs: list, path: str) -> None:
    """Unmanaged memory (above start-up) of each worker over time, the
    first round of each allocator."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colors = {"default": "tab:red", "jemalloc": "tab:orange", "mempool": "tab:blue"}
    for a in ALLOCATORS:
        rs = [r for r in runs if r["allocator"] == a]
        if not rs:
            continue
        r = rs[0]
        for k, addr in enumerate(sorted(r["base"])):
            t = [s[0] for s in r["samples"] if addr in s[1]]
            v = [_mib(s[1][addr]) for s in r["samples"] if addr in s[1]]
            ax.plot(t, v, color=colors[a], alpha=0.9 if k == 0 else 0.5,
                    label=f"{a} (busy {r['busy_seconds']:.0f} s)" if k == 0 else None)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("seconds (6 phases, chunk sizes drifting 1-12 MiB, each followed by 3 s idle)")
    ax.set_ylabel("unmanaged MiB above start-up")
    ax.set_title("Dask LocalCluster 2 workers x 2 threads, drifting chunk sizes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    """Run the comparison (or, with --one, one allocator's driver)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", choices=ALLOCATORS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--allocators", default=",".join(ALLOCATORS))
    parser.add_argument("--plot", default=None, help="write a PNG here")
    parser.add_argument("--json", default=None, help="write all samples here")
    ns = parser.parse_args(argv)
    if ns.one:
        print(json.dumps(run_one(ns.one)))
        return 0
    allocators = [a for a in ns.allocators.split(",") if a]
    if "jemalloc" in allocators and not os.path.exists(JEMALLOC):
        print(f"no {JEMALLOC} (apt-get install libjemalloc2): jemalloc skipped", file=sys.stderr)
        allocators.remove("jemalloc")
    runs = []
    for rnd in range(ns.rounds):
        order = allocators if rnd % 2 == 0 else allocators[::-1]
        for a in order:
            r = _child(a)
            runs.append(r)
            print(f"round {rnd + 1} {a}: busy {r['busy_seconds']:.1f} s, worker CPU "
                  f"{r['worker_cpu_seconds']:.1f} s, {r['worker_minor_faults']} faults, unmanaged after "
                  f"phases (MiB, mean of workers): " + " ".join(
                      f"{_mib(statistics.mean(p['unmanaged_after'].values())):.0f}"
                      for p in r["phases"]), file=sys.stderr, flush=True)
    print(summarize(runs))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(runs, f)
    if ns.plot:
        plot(runs, ns.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
