"""Where the pool's memory goes at the peak of each corpus trace.

``python -m mempool.tools.realbench.analyze [TRACE ...]`` replays each trace
(default: the whole corpus) in C into a fresh pool, stops at the event where
live bytes peak, and splits the pool's resident bytes there:

* live: the requested bytes of the live blocks;
* rounding: block sizes minus requested sizes, and of that the part due to
  the huge-page heap's 2 MiB granules (blocks >= ``huge_min``), computed
  from the live set the trace has at that event;
* slab free: free blocks inside small-size-class slabs;
* free resident: free pages of the heaps still resident (holes kept below the
  peak, and spans waiting for the decay);
* the rest (metadata and what the estimate cannot attribute).

It then replays the rest of the trace and reports the pool's own peak
resident over the whole trace (which may come after the live peak), next
to a placement reference: a best-fit heap (smallest hole, lowest address,
coalescing) per size range as the pool splits them, that never gives a
page back, whose high-water mark is what "keep every freed page" costs
with ideal placement (``bestfit_highwater``).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

MIB = 1 << 20
HUGE_GRANULE = 2 * MIB
PAGE = 4096


def live_sizes_at(events: np.ndarray, k: int) -> np.ndarray:
    """Requested sizes of the blocks live after event ``k``."""
    from mempool import trace as tr
    ev = events[: k + 1]
    size: Dict[int, int] = {}
    for op, bid, sz in zip(ev["op"].tolist(), ev["id"].tolist(), ev["size"].tolist()):
        if op == tr.FREE:
            size.pop(bid, None)
        else:
            size[bid] = sz
    return np.fromiter(size.values(), dtype=np.int64, count=len(size))


class _BestFit:
    """Best-fit placement over one address range in ``granule`` units."""

    def __init__(self, granule: int) -> None:
        self.g, self.free, self.top, self.high, self.live = granule, [], 0, 0, {}

    def alloc(self, bid: int, size: int) -> None:
        n = -(-size // self.g) * self.g
        fits = [(length, addr) for addr, length in self.free if length >= n]
        if fits:
            length, addr = min(fits)
            self.free.remove((addr, length))
            if length > n:
                bisect.insort(self.free, (addr + n, length - n))
        elif self.free and sum(self.free[-1]) == self.top:
            addr = self.free.pop()[0]
            self.top = addr + n
        else:
            addr, self.top = self.top, self.top + n
        self.live[bid] = (addr, n)
        self.high = max(self.high, self.top)

    def release(self, bid: int) -> None:
        addr, n = self.live.pop(bid)
        i = bisect.bisect(self.free, (addr, n))
        if i < len(self.free) and self.free[i][0] == addr + n:
            n += self.free.pop(i)[1]
        if i > 0 and sum(self.free[i - 1]) == addr:
            prev, plen = self.free.pop(i - 1)
            addr, n = prev, n + plen
        bisect.insort(self.free, (addr, n))


def bestfit_highwater(events: np.ndarray, small_max: int, huge_min: int) -> int:
    """Bytes touched by best-fit heaps that never purge (blocks above
    ``small_max``; 4 KiB granules below ``huge_min``, 2 MiB from it; 0: none)."""
    from mempool import trace as tr
    heaps = {False: _BestFit(PAGE), True: _BestFit(HUGE_GRANULE)}
    where: Dict[int, bool] = {}
    for op, bid, size in zip(events["op"].tolist(), events["id"].tolist(),
                             events["size"].tolist()):
        if op in (tr.REALLOC, tr.FREE) and bid in where:
            heaps[where.pop(bid)].release(bid)
        if op != tr.FREE and size > small_max:
            where[bid] = bool(huge_min) and size >= huge_min
            heaps[where[bid]].alloc(bid, size)
    return heaps[False].high + heaps[True].high


def breakdown(path: Path) -> Dict[str, Any]:
    """Replay ``path`` into a fresh pool; the pool's figures at the live peak."""
    import mempool
    from mempool.tools._replay import ReplayState
    from mempool import trace as tr
    t = tr.load(path)
    live = tr.live_series(t.events)
    k = int(live.argmax())
    pool = mempool.Pool()
    cfg = pool.config
    state = ReplayState(t.n_ids, pool)
    state.run(t.events[: k + 1].tobytes())
    s = pool.stats()
    sizes = live_sizes_at(t.events, k)
    huge_min = cfg["huge_min"] or (1 << 62)  # 0: no 2 MiB-granule heap
    huge = sizes[sizes >= huge_min]
    page = sizes[(sizes > cfg["small_max"]) & (sizes < huge_min)]
    out = {
        "trace": path.stem, "events": len(t), "peak_event": k,
        "live": s.live_bytes, "allocated": s.allocated_bytes, "resident": s.resident_bytes,
        "rounding": s.internal_waste_bytes,
        "huge_rounding": int((-huge % HUGE_GRANULE).sum()),
        "page_rounding": int((-page % PAGE).sum()),
        "huge_blocks": int(len(huge)), "page_blocks": int(len(page)),
        "small_blocks": int((sizes <= cfg["small_max"]).sum()),
        "slab_free": s.slab_free_bytes, "free_resident": s.dirty_free_bytes,
        "free": s.free_bytes,
        "largest_free": s.largest_free_bytes, "free_spans": s.free_span_count,
        "free_histogram": [list(r) for r in s.free_histogram if r[1]],
        "thread_caches": s.thread_cache_count, "metadata": s.metadata_bytes,
        "madvise": s.madvise_count, "mmap": s.mmap_count,
    }
    out["other"] = (out["resident"] - out["allocated"] - out["slab_free"]
                    - out["free_resident"])
    state.run(t.events[k + 1:].tobytes())
    s2 = pool.stats()
    out["peak_resident_whole"] = s2.peak_resident_bytes
    out["peak_live_whole"] = int(live.max())
    out["bestfit_highwater"] = bestfit_highwater(t.events, cfg["small_max"], cfg["huge_min"])
    out["errors"] = s2.error_total
    state.release()
    out["check"] = pool.check()
    pool.close()
    return out


def _mib(x: int) -> str:
    return f"{x / MIB:.1f}"


def render(rows: List[Dict[str, Any]]) -> str:
    """A Markdown table of the breakdowns."""
    head = ["trace", "live MiB", "resident MiB", "res/live", "rounding (huge 2 MiB)",
            "slab free", "free resident", "other", "pool peak res / peak live",
            "best-fit keep-all / peak live"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["trace"], _mib(r["live"]), _mib(r["resident"]),
            f"{r['resident'] / max(1, r['live']):.3f}",
            f"{_mib(r['rounding'])} ({_mib(r['huge_rounding'])})", _mib(r["slab_free"]),
            _mib(r["free_resident"]), _mib(r["other"]),
            f"{r['peak_resident_whole'] / max(1, r['peak_live_whole']):.3f}",
            f"{r['bestfit_highwater'] / max(1, r['peak_live_whole']):.3f}"]) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; prints the Markdown table (and JSON with --json)."""
    from mempool.tools import corpus
    p = argparse.ArgumentParser(prog="python -m mempool.tools.realbench.analyze",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("traces", nargs="*", type=Path)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        paths = args.traces or sorted(corpus.trace_dir(real=True).glob("*.trace"))
    except corpus.CorpusMissing as exc:
        print(f"python -m mempool.tools.realbench.analyze: no TRACE given, and {exc}",
              file=sys.stderr)
        return 2
    rows = [breakdown(path) for path in paths]
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
