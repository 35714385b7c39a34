"""Replay the tuning corpus under the pool and its peers, one child process per
(trace, allocator): page faults, peak RSS over the pre-replay level and RSS at the
end (the trace's last blocks still held) -- the real-library suite's three memory
columns, measured on the recorded allocations alone (no interpreter noise).

    python benches/corpus_peers.py [--pool '{"decay": 1}'] [--only pd_groupby,sp_signal]
                                   [--allocators mempool,malloc,glibc-tuned,...]

Each child replays in C (``mempool.tools._replay.ReplayState``), writing one byte per 4 KiB page of every
block as numpy would; the pool row uses ``mempool.Pool(**POOL_JSON)`` and reports its
own peak resident and fresh bytes too.  Faults and peak RSS repeat within ~1% between
runs (the replay has no idle time: the decay never fires); times are not shown.
"""
import argparse
import glob
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent / "traces"
PEERS = ("mempool", "malloc", "glibc-tuned", "jemalloc", "mimalloc", "tcmalloc")


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(path: str, backend: str, pool_kw: dict) -> dict:
    """Replay one trace here; the figures as a dict."""
    import mempool
    from mempool import trace as tr
    from mempool.tools._replay import ReplayState
    t = tr.load(path)
    pool = mempool.Pool(**pool_kw) if backend == "pool" else None
    state = ReplayState(t.n_ids, pool)
    base = _rss()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    state.run(t.events.tobytes())
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {"faults": ru1.ru_minflt - ru0.ru_minflt,
           "peak_over_base": ru1.ru_maxrss * 1024 - base,
           "rss_end": _rss() - base, "peak_live": t.summary()["peak_live_bytes"]}
    if pool is not None:
        s = pool.stats()
        out.update(pool_peak=s.peak_resident_bytes,
                   fresh=s.resident_bytes + s.released_bytes,
                   madvise=s.madvise_count, check=pool.check())
    state.release()
    return out


def spawn(path: str, alloc: str, pool_kw: dict) -> dict:
    """Run ``child`` in a fresh process under allocator ``alloc``."""
    from mempool.tools.demo import runner
    name = "default" if alloc == "malloc" else alloc
    a = runner.discover([name])[0]
    if not a.available:
        return {"error": a.reason}
    env = runner.child_env(a)
    proc = subprocess.run([sys.executable, __file__, "--child", path,
                           "pool" if a.use_pool else "malloc", json.dumps(pool_kw)],
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    """Print one table row per trace: faults / peak over base / RSS at end per allocator."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", default="{}", help="Pool keyword arguments, JSON")
    p.add_argument("--only", default=None, help="comma-separated trace names")
    p.add_argument("--allocators", default=",".join(PEERS))
    p.add_argument("--extra", action="append", default=[], help="more trace files")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        print(json.dumps(child(ns.child[0], ns.child[1], json.loads(ns.child[2]))))
        return 0
    paths = sorted(glob.glob(str(ROOT / "real" / "*.trace"))) + [
        str(ROOT / "mlp.trace"), str(ROOT / "temporaries.trace")] + ns.extra
    if ns.only:
        keep = set(ns.only.split(","))
        paths = [q for q in paths if Path(q).stem in keep]
    allocs = ns.allocators.split(",")
    pool_kw = json.loads(ns.pool)
    results = {}
    print(f"{'trace':14s} " + " ".join(f"{a[:11]:>24s}" for a in allocs))
    print(f"{'':14s} " + " ".join(f"{'faults peak end':>24s}" for _ in allocs))
    for q in paths:
        row = {a: spawn(q, a, pool_kw) for a in allocs}
        results[Path(q).stem] = row
        cells = []
        for a in allocs:
            r = row[a]
            cells.append(f"{'error':>24s}" if "error" in r else
                         f"{r['faults']:8d} {r['peak_over_base'] / MIB:7.1f} {r['rss_end'] / MIB:7.1f}")
        extra = ""
        if "mempool" in row and "pool_peak" in row["mempool"]:
            m = row["mempool"]
            extra = (f"  pool peak/live {m['pool_peak'] / max(1, m['peak_live']):.3f} "
                     f"fresh {m['fresh'] / MIB:.0f} MiB check {m['check']}")
        print(f"{Path(q).stem:14s} " + " ".join(cells) + extra, flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
