"""Child process of the demo: run one workload under one allocator and measure it.

Run as a script (``python child.py CONFIG_JSON OUT_PATH``), never imported by
the rows it measures: resident memory and page faults are per process, so
each (workload, allocator) pair gets a fresh interpreter.  Only the mempool
row imports ``mempool``; the other rows load nothing but numpy and the
workloads module (by file path), so the pool cannot disturb their figures.

Protocol with the runner: after the loop, and after everything the loop made
has been dropped, the child prints ``LOOP_DONE`` on stdout.  The runner may
then start the next child while this one sleeps through the pool's decay
period (a sleeping process takes no CPU), after which this child writes its
JSON to OUT_PATH and exits.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

PAGE = os.sysconf("SC_PAGE_SIZE")
#: The pool's figures kept for every step (the report's and plots' needs).
STEP_FIELDS = ("live_bytes", "resident_bytes", "fragmentation")


def _load_workloads():
    """Import the sibling ``workloads.py`` by path, without importing mempool."""
    path = Path(__file__).with_name("workloads.py")
    spec = importlib.util.spec_from_file_location("_mempool_demo_workloads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RssReader:
    """Current resident set size from /proc/self/statm, one pread per call.

    Cheaper than psutil per step (no object, no parsing of a larger file)
    and identical in value: the second field of statm is RSS in pages.
    """

    def __init__(self) -> None:
        self.fd = os.open("/proc/self/statm", os.O_RDONLY)

    def __call__(self) -> int:
        fields = os.pread(self.fd, 128, 0).split()
        return int(fields[1]) * PAGE

    def close(self) -> None:
        """Close the statm file descriptor."""
        os.close(self.fd)


class StepPeak:
    """The kernel's resident high-water mark (VmHWM), restarted after every
    read: writing "5" to ``/proc/self/clear_refs`` (Linux >= 4.0) resets it to
    the current RSS, so each read gives the peak since the previous one, the
    moment inside a step when its old and new arrays are both alive included
    (RSS read after a step misses it).  The reset also lowers ``ru_maxrss``,
    so the run's peak is the largest of the reads.  :meth:`open` returns None
    where the kernel does not allow it."""

    def __init__(self) -> None:
        self.buf = bytearray(4096)  # read into, so that a read mallocs nothing
        self.status = os.open("/proc/self/status", os.O_RDONLY)
        try:
            self.clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            os.close(self.status)
            raise

    @classmethod
    def open(cls) -> "Optional[StepPeak]":
        """A reader, or None without a resettable high-water mark."""
        try:
            reader = cls()
            reader.read_and_reset()
            return reader
        except (OSError, ValueError):
            return None

    def read_and_reset(self) -> int:
        """Peak resident bytes since the last call (or the process start)."""
        n = os.preadv(self.status, [self.buf], 0)
        at = self.buf.index(b"VmHWM:", 0, n)
        kib = int(self.buf[at + 6:self.buf.index(b"kB", at, n)])
        os.write(self.clear, b"5")
        return kib * 1024

    def close(self) -> None:
        """Close both files."""
        os.close(self.status)
        os.close(self.clear)


def memory_map() -> Dict[str, int]:
    """Resident bytes by kind of mapping (``/proc/self/smaps``): ``file``
    (code and data of libraries and other mapped files), ``heap`` (malloc's
    brk heap), ``anon`` (anonymous mappings: the pool's arenas, other
    allocators' mmaps, BLAS buffers, Python's object arenas, thread stacks)
    and ``other`` ([stack], [vdso], ...).  Empty where smaps is unreadable."""
    out = {"file": 0, "heap": 0, "anon": 0, "other": 0}
    kind = "other"
    try:
        with open("/proc/self/smaps", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    out[kind] += int(line.split()[1]) * 1024
                elif not line[:1].isupper():        # a mapping's header line
                    fields = line.split(None, 5)
                    name = fields[5].strip() if len(fields) > 5 else b""
                    kind = ("anon" if not name else "heap" if name == b"[heap]"
                            else "other" if name.startswith(b"[") else "file")
    except OSError:
        return {}
    return out


def _peak_rss_bytes() -> int:
    """The kernel's high-water mark of resident memory for this process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pool_stats(pool) -> Dict[str, Any]:
    """The pool's statistics as a plain dict of numbers."""
    snap = pool.stats()
    data = snap.as_dict() if hasattr(snap, "as_dict") else dict(vars(snap))
    return {k: v for k, v in data.items() if isinstance(v, (int, float))}


def run_child(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run the configured workload with per-step measurement; return the record."""
    wl_mod = _load_workloads()
    rss = RssReader()
    use_pool = bool(cfg.get("use_pool"))
    pool = None
    mempool = None
    if use_pool:
        import mempool  # noqa: F811 - only this row loads the pool
        pool = mempool.default_pool()
    gc.collect()
    record: Dict[str, Any] = {
        "status": "ok",
        "pid": os.getpid(),
        "baseline_map": memory_map(),
        "baseline_rss": rss(),
        "env": {k: os.environ.get(k, "") for k in ("LD_PRELOAD", "GLIBC_TUNABLES")},
    }
    steps = int(cfg["steps"])
    ctx = mempool.use(pool) if use_pool else None
    if ctx is not None:
        ctx.__enter__()
    try:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        wl = wl_mod.make(cfg["workload"], steps, int(cfg.get("seed", 0)),
                         tuple(cfg.get("batch_range", wl_mod.DEFAULT_BATCH_RANGE)),
                         floor=bool(cfg.get("floor")))
        record["workload"] = wl.describe()
        record["ops_per_step"] = wl.ops_per_step
        record["live_estimate_bytes"] = wl.live_estimate_bytes()
        record["rss_after_setup"] = rss()
        # Every per-step list is made at full length before the loop: a list
        # growing past 64 items reallocates through malloc, and such a block
        # landing above a freed result pins glibc's heap top (the default
        # row's temporaries peaked at 354.7 MB so, against 335.1 MB for the
        # bare loop).  The loop allocates only small Python objects.
        times: List[int] = [0] * steps
        cpu: List[int] = [0] * steps
        faults: List[int] = [0] * steps
        rss_steps: List[int] = [0] * steps
        values: List[float] = [0.0] * steps
        pool_steps: List[Dict[str, Any]] = [{}] * steps if pool is not None else []
        getrusage = resource.getrusage
        perf = time.perf_counter_ns
        # CPU time of the whole process (BLAS threads and the kernel's fault
        # handling included): far less sensitive than wall time to other
        # processes competing for the cores.
        cpu_now = time.process_time_ns
        step_peak: List[int] = [0] * steps
        peak = StepPeak.open()
        peak_before_loop = _peak_rss_bytes()
        if peak is not None:
            peak.read_and_reset()
        ru_start = getrusage(resource.RUSAGE_SELF)
        for i in range(steps):
            f0 = getrusage(resource.RUSAGE_SELF).ru_minflt
            c0 = cpu_now()
            t0 = perf()
            values[i] = wl.step(i)
            t1 = perf()
            c1 = cpu_now()
            f1 = getrusage(resource.RUSAGE_SELF).ru_minflt
            times[i] = t1 - t0
            cpu[i] = c1 - c0
            faults[i] = f1 - f0
            rss_steps[i] = rss()
            if peak is not None:
                step_peak[i] = peak.read_and_reset()
            if pool is not None:
                # Only what the report and plots read: a full stats dict per
                # step would itself add to this row's peak RSS.
                snap = pool.stats()
                pool_steps[i] = {k: getattr(snap, k) for k in STEP_FIELDS}
        ru_end = getrusage(resource.RUSAGE_SELF)
        record.update(
            step_ns=times, step_cpu_ns=cpu, step_faults=faults, step_rss=rss_steps, values=values,
            digest=wl_mod.digest(values),
            loop_utime_s=ru_end.ru_utime - ru_start.ru_utime,
            loop_stime_s=ru_end.ru_stime - ru_start.ru_stime,
            setup_faults=ru_start.ru_minflt - ru0.ru_minflt,
            # the resets lowered ru_maxrss: the run's peak is the largest window's
            peak_rss=max([_peak_rss_bytes(), peak_before_loop] + step_peak),
            rss_end_of_loop=rss(),
            end_of_loop_map=memory_map(),
        )
        if peak is not None:
            record["step_peak_rss"] = step_peak
            peak.close()
        if hasattr(wl, "size_table"):
            # per-size cost, still under this row's allocator
            record["size_table_ns"] = wl.size_table()
        if pool is not None:
            record["pool_steps"] = pool_steps
            record["pool_end_of_loop"] = _pool_stats(pool)
        wl.close()
        del wl
        gc.collect()
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    record["rss_after_free_now"] = rss()
    # Tell the runner the measured part is over; it may start the next child.
    sys.stdout.write("LOOP_DONE\n")
    sys.stdout.flush()
    settle = float(cfg.get("settle_s", 1.5))
    if pool is not None:
        # Wait out the pool's own decay, whatever it is configured to.
        decay = getattr(pool, "config", {}).get("decay")
        if isinstance(decay, (int, float)) and decay == decay and decay < 60:
            settle = max(settle, float(decay) + 0.5)
    time.sleep(settle)  # longer than the pool's decay; trim() is NOT called
    record["settle_s"] = settle
    record["rss_after_free"] = rss()
    if pool is not None:
        record["pool_after_free"] = _pool_stats(pool)
    rss.close()
    return record


def protocol_main(run: Any, argv: Optional[List[str]] = None,
                  done_line: str = "") -> int:
    """The children's protocol (the demo's and the real-library suite's):
    ``child.py CONFIG_JSON OUT_PATH`` runs ``run(config)`` and always writes
    OUT_PATH, a failure included (as data), then exits without teardown."""
    args = sys.argv[1:] if argv is None else argv
    cfg = json.loads(args[0])
    out = Path(args[1])
    try:
        record = run(cfg)
        code = 0
    except BaseException as exc:  # report any failure to the runner as data
        record = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
        code = 1
    record["config"] = cfg
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, default=str))
    tmp.replace(out)  # the runner never sees a half-written file
    if done_line:
        sys.stdout.write(done_line)  # unblocks a runner waiting for the loop's end
    sys.stdout.flush()
    # Skip interpreter teardown: it would only add noise for the next child.
    os._exit(code)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: ``child.py CONFIG_JSON OUT_PATH``; always writes OUT_PATH."""
    return protocol_main(run_child, argv)


if __name__ == "__main__":
    main()
