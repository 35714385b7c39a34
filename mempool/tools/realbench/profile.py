"""Run one suite workload repeatedly in this process, for a profiler.

``perf record -g python -m mempool.tools.realbench.profile WORKLOAD [--pool]
[--repeat N]``: with ``--pool`` the pool is installed before anything else
(as ``python -m mempool run`` does); the workload's imports are done before
the repeats, so a profile of N repeats is mostly the work itself.  Prints the
CPU seconds and page faults of the repeats, and the pool's figures.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import sys
import time
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; the exit status."""
    p = argparse.ArgumentParser(prog="python -m mempool.tools.realbench.profile")
    p.add_argument("workload")
    p.add_argument("--pool", action="store_true", help="install the pool first")
    p.add_argument("--huge-pages", choices=("auto", "on", "off"), default=None,
                   help="with --pool: the pool's huge_pages setting (default: the pool's)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="the workload's quick size")
    args = p.parse_args(argv)
    pool = None
    if args.pool:
        import mempool
        pool = mempool.install(None if args.huge_pages is None
                               else mempool.Pool(huge_pages=args.huge_pages))
    from . import workloads
    if args.workload not in workloads.WORKLOADS:
        p.error(f"unknown workload {args.workload!r}; choose from "
                f"{', '.join(workloads.WORKLOADS)}")
    wl = workloads.WORKLOADS[args.workload]
    for name in wl.imports:
        importlib.import_module(name)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time()
    for _ in range(args.repeat):
        wl.fn(wl.quick if args.quick else wl.full, 0)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{args.workload} x{args.repeat} ({'pool' if pool else 'default'}): CPU "
          f"{time.process_time() - c0:.2f} s, faults {ru1.ru_minflt - ru0.ru_minflt}, "
          f"peak RSS {ru1.ru_maxrss / 1024:.1f} MiB")
    if pool is not None:
        s = pool.stats()
        print(f"pool: peak live {s.peak_live_bytes / 2**20:.1f} MiB, peak resident "
              f"{s.peak_resident_bytes / 2**20:.1f} MiB, calloc {s.calloc_count} of "
              f"{s.alloc_count} allocs, madvise {s.madvise_count}, mmap {s.mmap_count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
