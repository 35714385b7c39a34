"""Run the real-library suite: every (workload, allocator) pair in its own
child process, in interleaved rounds.

The allocators and their environments are the demo's
(:func:`mempool.tools.demo.runner.discover`, :func:`mempool.tools.demo.runner.child_env`:
numpy's default, tuned glibc through ``GLIBC_TUNABLES``, mempool, and
jemalloc, mimalloc, tcmalloc through ``LD_PRELOAD``), and so is the child
protocol (:class:`mempool.tools.demo.runner._Running`).  Within a round each
workload's allocators run back to back in an order rotated by one each round.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from mempool.tools.demo import runner as demo_runner

from . import workloads as wl_mod

CHILD = Path(__file__).with_name("child.py")
ALLOCATORS = ("default", "glibc-tuned", "mempool", "jemalloc", "mimalloc", "tcmalloc")
THREAD_VARS = demo_runner.BLAS_VARS


def missing_libraries(workloads: Sequence[str]) -> List[str]:
    """Top-level libraries the given workloads need that are not installed."""
    need = sorted({lib for w in workloads for lib in wl_mod.WORKLOADS[w].libs})
    return [lib for lib in need if importlib.util.find_spec(lib) is None]


def thread_env(workload: str) -> Dict[str, str]:
    """BLAS/OpenMP thread settings of a workload, the same for every row."""
    threads = wl_mod.WORKLOADS[workload].threads
    return {} if threads is None else {k: str(threads) for k in THREAD_VARS}


def start_child(alloc, cfg: Dict[str, Any], workdir: Path, tag: str,
                timeout_s: float):
    """Start one child; return once its measured work is over (the demo's
    protocol: it then sleeps through the idle second while the next runs)."""
    out, err = workdir / f"{tag}.json", workdir / f"{tag}.stderr"
    env = demo_runner.child_env(alloc, thread_env(cfg["workload"]))
    with open(err, "wb") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(dict(cfg, use_pool=alloc.use_pool)),
             str(out)], stdout=subprocess.PIPE, stderr=err_fh, env=env, text=True)
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.strip() == "LOOP_DONE":
                break
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    return demo_runner._Running(proc, out, err, {"allocator": alloc.name,
                                                 "workload_name": cfg["workload"],
                                                 "round": cfg["round"]})


def run_suite(allocators: Sequence[Any], workloads: Sequence[str], rounds: int,
              quick: bool, seed: int = 0, settle_s: float = 1.0,
              timeout_s: float = 600.0,
              on_progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """Run every workload under every available allocator ``rounds`` times;
    return the child records (one per run)."""
    active = [a for a in allocators if a.available]
    records: List[Dict[str, Any]] = []
    pending: list = []

    def reap(block: bool) -> None:
        for run in list(pending):
            if block or run.proc.poll() is not None:
                pending.remove(run)
                records.append(run.collect(timeout_s))

    with tempfile.TemporaryDirectory(prefix="mempool-realbench-") as tmp:
        try:
            for r in range(rounds):
                shift = r % max(1, len(active))
                order = active[shift:] + active[:shift]
                for wl in workloads:
                    spec = wl_mod.WORKLOADS[wl]
                    for alloc in order:
                        if on_progress:
                            on_progress(f"round {r + 1}/{rounds} · {wl} · {alloc.name}")
                        cfg = {"workload": wl, "n": spec.quick if quick else spec.full,
                               "seed": seed, "settle_s": settle_s, "round": r}
                        pending.append(start_child(alloc, cfg, Path(tmp),
                                                   f"r{r}-{wl}-{alloc.name}", timeout_s))
                        reap(block=False)
            reap(block=True)
        except BaseException:
            for run in pending:
                run.proc.kill()
                run.proc.wait()
            raise
    return records


def record_trace(workload: str, out: Path, n: Optional[int] = None, seed: int = 0,
                 timeout_s: float = 600.0) -> Dict[str, Any]:
    """Record ``workload`` (default size: its corpus size) as an allocation
    trace into ``out``, in a fresh child with the pool installed."""
    spec = wl_mod.WORKLOADS[workload]
    alloc = demo_runner.discover(["mempool"])[0]
    if not alloc.available:
        raise RuntimeError(alloc.reason)
    cfg = {"workload": workload, "n": (spec.corpus or spec.full) if n is None else int(n), "seed": seed,
           "settle_s": 0.0, "round": 0, "record": str(Path(out).resolve())}
    with tempfile.TemporaryDirectory(prefix="mempool-realbench-rec-") as tmp:
        rec = start_child(alloc, cfg, Path(tmp), f"rec-{workload}", timeout_s).collect(timeout_s)
    if rec.get("status") != "ok":
        raise RuntimeError(f"recording {workload} failed: {rec.get('error')}\n"
                           f"{rec.get('stderr_tail', '')}")
    return rec
