"""Child process of the real-library suite: one workload under one allocator.

Run as a script (``python child.py CONFIG_JSON OUT_PATH``).  The mempool row
installs the pool first thing, as ``python -m mempool run`` does (every
array of the process, threads started later included); the other rows never
import mempool, and get their allocator from the environment the runner sets
(``LD_PRELOAD``, ``GLIBC_TUNABLES``).  The workload module is loaded by file
path for the same reason.

Protocol (the demo's, :mod:`mempool.tools.demo.child`): after the work, and after
its outputs are dropped, the child prints ``LOOP_DONE``; the runner may then
start the next child while this one sleeps through the idle second (and the
pool's decay), reads its RSS again and writes its JSON record.

With ``record`` in the config the work is also recorded as an allocation
trace (:func:`mempool.trace.record`) into that path: the tuning corpus.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def _load_workloads():
    """Import the sibling ``workloads.py`` by path, without importing mempool."""
    name = "_mempool_realbench_workloads"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("workloads.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pool_stats(pool) -> Dict[str, Any]:
    snap = pool.stats().as_dict()
    return {k: v for k, v in snap.items() if isinstance(v, (int, float, list, dict))}


def run_child(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run the configured workload once, measured; return the record."""
    pool = None
    if cfg.get("use_pool"):
        import mempool
        pool = mempool.install()  # what `python -m mempool run` does at start-up
    wl_mod = _load_workloads()
    wl = wl_mod.WORKLOADS[cfg["workload"]]
    for name in wl.imports:  # import cost is not the work
        importlib.import_module(name)
    n = int(cfg["n"])
    gc.collect()
    record: Dict[str, Any] = {"status": "ok", "pid": os.getpid(), "n": n,
                              "baseline_rss": _rss(),
                              "baseline_maxrss": resource.getrusage(
                                  resource.RUSAGE_SELF).ru_maxrss * 1024}
    recording = None
    if cfg.get("record"):
        from mempool import trace as trace_mod
        recording = trace_mod.record(cfg["record"], pool=pool, use=False, meta={
            "workload": cfg["workload"], "n": n, "seed": cfg["seed"],
            "recorded_by": "python -m mempool bench --real --record"})
        recording.__enter__()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    outputs = wl.fn(n, int(cfg["seed"]))
    t1 = time.perf_counter_ns()
    c1 = time.process_time_ns()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    record.update(
        wall_s=(t1 - t0) / 1e9, cpu_s=(c1 - c0) / 1e9,
        minflt=ru1.ru_minflt - ru0.ru_minflt, majflt=ru1.ru_majflt - ru0.ru_majflt,
        peak_rss=ru1.ru_maxrss * 1024, rss_end_of_work=_rss(),
        digest=wl_mod.digest(outputs))
    record["faults"] = record["minflt"] + record["majflt"]
    record["peak_rss_over_baseline"] = record["peak_rss"] - record["baseline_rss"]
    if pool is not None:
        record["pool_at_end"] = _pool_stats(pool)
    del outputs
    gc.collect()
    if recording is not None:
        recording.__exit__(None, None, None)
    record["rss_after_drop"] = _rss()
    sys.stdout.write("LOOP_DONE\n")
    sys.stdout.flush()
    settle = float(cfg.get("settle_s", 1.0))
    if pool is not None:
        decay = pool.config.get("decay")
        if isinstance(decay, (int, float)) and decay == decay and decay < 60:
            settle = max(settle, float(decay) + 0.5)
    time.sleep(settle)  # idle: trim() is NOT called
    record["settle_s"] = settle
    record["rss_after"] = _rss()
    if pool is not None:
        record["pool_after"] = _pool_stats(pool)
    return record


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: ``child.py CONFIG_JSON OUT_PATH``; always writes OUT_PATH."""
    from mempool.tools.demo.child import protocol_main
    # LOOP_DONE: harmless if already sent; unblocks the runner on an error
    return protocol_main(run_child, argv, done_line="LOOP_DONE\n")


if __name__ == "__main__":
    main()
