"""Run the demo's workloads in child processes, one allocator per child.

The runner knows the allocators (numpy's default, tuned glibc, mempool and
the LD_PRELOAD peers), finds which ones this machine has, and runs every
(workload, allocator) pair in interleaved rounds so that machine noise hits
all allocators alike.  It returns the raw child records; :mod:`report` turns
them into tables, plots and JSON.
"""

from __future__ import annotations

import ctypes.util
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import workloads as wl_mod

CHILD = Path(__file__).with_name("child.py")
#: The package root's parent: put first on the children's PYTHONPATH so that
#: ``import mempool`` in the mempool row finds this very checkout.
PACKAGE_PARENT = Path(__file__).resolve().parents[3]

TUNED_GLIBC = ("glibc.malloc.mmap_threshold=33554432:"
               "glibc.malloc.trim_threshold=1073741824")
INSTALL_HINT = "apt-get install libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4"

#: Peer allocators: name -> (ctypes.util.find_library names, glob patterns).
PEERS = {
    "jemalloc": (("jemalloc",), ("libjemalloc.so*",)),
    "mimalloc": (("mimalloc",), ("libmimalloc.so*",)),
    "tcmalloc": (("tcmalloc_minimal", "tcmalloc"),
                 ("libtcmalloc_minimal.so*", "libtcmalloc.so*")),
}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu")

#: Environment variables that set the BLAS thread count.
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

ALL_ALLOCATORS = ("default", "glibc-tuned", "mempool", "jemalloc", "mimalloc",
                  "tcmalloc", "floor")


@dataclass
class Allocator:
    """One column of the comparison: how to start a child that uses it."""

    name: str
    env: Dict[str, str] = field(default_factory=dict)
    use_pool: bool = False
    available: bool = True
    reason: str = ""
    #: Not an allocator but the reference row: numpy's default allocator
    #: running the workload's floor variant (large arrays made before the loop).
    floor: bool = False

    def describe(self) -> Dict[str, Any]:
        """JSON-friendly description."""
        return {"name": self.name, "env": self.env, "use_pool": self.use_pool,
                "available": self.available, "reason": self.reason, "floor": self.floor}

    def runs(self, workload: str) -> bool:
        """Whether this row applies to ``workload`` (the floor row needs a floor variant)."""
        return not self.floor or wl_mod.WORKLOADS[workload][0].has_floor


def find_shared_library(names: Sequence[str], patterns: Sequence[str]) -> Optional[str]:
    """Absolute path of the first installed library matching ``names``/``patterns``."""
    for pattern in patterns:
        for directory in LIB_DIRS:
            hits = sorted(p for p in glob.glob(os.path.join(directory, pattern))
                          if "debug" not in os.path.basename(p))
            if hits:
                return hits[0]
    for name in names:
        found = ctypes.util.find_library(name)
        if found:
            return found  # a soname the dynamic loader can resolve
    return None


def mempool_status() -> str:
    """Empty string if the mempool extension and API are usable, else why not."""
    try:
        import importlib
        importlib.import_module("mempool._core")
        import mempool
    except Exception as exc:  # any import failure means "not built" here
        return f"mempool not built ({type(exc).__name__}: {exc}); run: pip install -e ."
    missing = [n for n in ("use", "default_pool") if not hasattr(mempool, n)]
    if missing:
        return f"mempool API incomplete (missing {', '.join(missing)})"
    return ""


def discover(names: Sequence[str]) -> List[Allocator]:
    """Build the requested allocators, marking those this machine lacks."""
    out: List[Allocator] = []
    for name in names:
        if name == "default":
            out.append(Allocator(name))
        elif name == "floor":
            out.append(Allocator(name, floor=True))
        elif name == "glibc-tuned":
            out.append(Allocator(name, env={"GLIBC_TUNABLES": TUNED_GLIBC}))
        elif name == "mempool":
            why = mempool_status()
            out.append(Allocator(name, use_pool=True, available=not why, reason=why))
        elif name in PEERS:
            lib = find_shared_library(*PEERS[name])
            if lib:
                out.append(Allocator(name, env={"LD_PRELOAD": lib}))
            else:
                out.append(Allocator(name, available=False,
                                     reason=f"{name} not installed; run: {INSTALL_HINT}"))
        else:
            raise ValueError(f"unknown allocator {name!r}; choose from "
                             f"{', '.join(ALL_ALLOCATORS)}")
    return out


def workload_env(workload: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``extra`` for one workload's children: a workload that makes no BLAS
    call gets one BLAS thread unless the user chose a count (idle OpenBLAS
    workers spin after numpy's import, and on two cores that halves the
    speed of a short loop at random, whatever the allocator)."""
    env = dict(extra or {})
    if not wl_mod.WORKLOADS[workload][0].uses_blas and not any(k in env for k in BLAS_VARS):
        env.update({k: "1" for k in BLAS_VARS})
    return env


def child_env(alloc: Allocator, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a child: the parent's, minus allocator settings, plus
    ``extra`` (the same for every row, e.g. BLAS thread counts) and ours."""
    env = dict(os.environ)
    # A demo started under a preload or tunables must not leak them into
    # rows; except a sanitizer runtime (the ASan test stage), without which
    # a child cannot load the sanitizer-built extension at all.
    sanitizer = [lib for lib in env.get("LD_PRELOAD", "").split(":")
                 if os.path.basename(lib).startswith(("libasan", "libtsan", "libubsan"))]
    for key in ("LD_PRELOAD", "GLIBC_TUNABLES"):
        env.pop(key, None)
    env.update(extra or {})
    env.update(alloc.env)
    if sanitizer and "LD_PRELOAD" not in alloc.env:
        env["LD_PRELOAD"] = ":".join(sanitizer)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PACKAGE_PARENT) + (os.pathsep + path if path else "")
    return env


class _Running:
    """A child that has finished its loop and is sleeping through the decay."""

    def __init__(self, proc: subprocess.Popen, out: Path, err: Path,
                 key: Dict[str, Any]) -> None:
        self.proc, self.out, self.err, self.key = proc, out, err, key

    def collect(self, timeout: float) -> Dict[str, Any]:
        """Wait for the child and read its record (or describe its failure)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        stderr = self.err.read_text(errors="replace")[-4000:] if self.err.exists() else ""
        if self.out.exists():
            record = json.loads(self.out.read_text())
        else:
            record = {"status": "error",
                      "error": f"child exited with status {rc} and wrote no record"}
        record["returncode"] = rc
        if stderr.strip():
            record["stderr_tail"] = stderr
        if rc != 0 and record.get("status") == "ok":
            record["status"] = "error"
            record["error"] = f"child exited with status {rc}"
        record.update(self.key)
        return record


def start_child(alloc: Allocator, cfg: Dict[str, Any], workdir: Path,
                tag: str, timeout_s: float = 600.0,
                extra_env: Optional[Dict[str, str]] = None) -> _Running:
    """Start one child and block until its measured loop is over (a child
    still in its loop after ``timeout_s`` is killed and reported as failed)."""
    out = workdir / f"{tag}.json"
    err = workdir / f"{tag}.stderr"
    full = dict(cfg, use_pool=alloc.use_pool, floor=alloc.floor)
    with open(err, "wb") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(full), str(out)],
            stdout=subprocess.PIPE, stderr=err_fh, env=child_env(alloc, extra_env),
            text=True)
    # Block until the loop is done (or the child died): the next child may then
    # run while this one sleeps, without the two competing for the CPU.
    watchdog = threading.Timer(timeout_s, proc.kill)  # a hung pool must not hang the demo
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.strip() == "LOOP_DONE":
                break
    except BaseException:  # Ctrl-C: leave no orphan running its loop
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    return _Running(proc, out, err, {"allocator": alloc.name,
                                     "workload_name": cfg["workload"],
                                     "round": cfg["round"]})


def run_all(allocators: Sequence[Allocator], workloads: Sequence[str],
            steps: Dict[str, int], rounds: int, seed: int,
            batch_range, settle_s: float,
            on_progress: Optional[Callable[[str, bool], None]] = None,
            on_done: Optional[Callable[[Dict[str, Any]], None]] = None,
            timeout_s: float = 600.0,
            extra_env: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """Run every workload under every available allocator, ``rounds`` times.

    Within a round each workload's allocators run back to back, in an order
    rotated by one each round, so no allocator always runs first (after a
    cold start) or last.  ``on_progress(label, finished)`` is called before
    and after each child's loop.  Returns the child records in completion
    order.
    """
    active = [a for a in allocators if a.available]
    records: List[Dict[str, Any]] = []
    pending: List[_Running] = []

    def reap(block: bool) -> None:
        for run in list(pending):
            if block or run.proc.poll() is not None:
                pending.remove(run)
                rec = run.collect(timeout_s)
                records.append(rec)
                if on_done:
                    on_done(rec)

    with tempfile.TemporaryDirectory(prefix="mempool-demo-") as tmp:
        workdir = Path(tmp)
        try:
            for r in range(rounds):
                for wl in workloads:
                    shift = r % max(1, len(active))
                    order = active[shift:] + active[:shift]
                    for alloc in order:
                        if not alloc.runs(wl):
                            continue
                        label = f"round {r + 1}/{rounds} · {wl} · {alloc.name}"
                        if on_progress:
                            on_progress(label, False)
                        cfg = {"workload": wl, "steps": steps[wl], "seed": seed,
                               "batch_range": list(batch_range), "settle_s": settle_s,
                               "round": r}
                        pending.append(start_child(alloc, cfg, workdir,
                                                   f"r{r}-{wl}-{alloc.name}", timeout_s,
                                                   workload_env(wl, extra_env)))
                        if on_progress:
                            on_progress(label, True)
                        reap(block=False)
            reap(block=True)
        except BaseException:  # interrupted: the sleeping children go too
            for run in pending:
                run.proc.kill()
                run.proc.wait()
            raise
    return records
