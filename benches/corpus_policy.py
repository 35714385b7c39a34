"""Replay the tuning corpus and the demo's traces into a fresh pool each: the pool's
peak resident / peak live, and the bytes it made resident (fresh MiB: resident at the
end + released, a page-fault proxy that does not depend on timing), next to madvise calls.

    python benches/corpus_policy.py ['{"huge_pages": "off"}' [NAME,NAME...]]

The argument (JSON) is passed to ``mempool.Pool``; the second names the traces to run.
Faults: the process's minor page faults during the replay (the pool writes one byte
per 4 KiB page, as the replay engine does; a huge page faults once).  Deterministic: the replay runs in C,
with no idle time, so the decay never fires; what differs between two builds is policy.
"""
import glob
import json
import resource
import sys
from pathlib import Path

import mempool
from mempool import trace as tr
from mempool.tools._replay import ReplayState

MIB = 1 << 20


def main() -> int:
    """Print one line per trace."""
    root = Path(__file__).resolve().parent / "traces"
    paths = sorted(glob.glob(str(root / "real" / "*.trace")))
    paths += [str(root / "mlp.trace"), str(root / "temporaries.trace")]
    kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
    for p in paths:
        if only and Path(p).stem not in only:
            continue
        t = tr.load(p)
        pool = mempool.Pool(**kw)
        state = ReplayState(t.n_ids, pool)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        state.run(t.events.tobytes())
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        s = pool.stats()
        fresh = (s.resident_bytes + s.released_bytes) / MIB
        peak_live = s.peak_live_bytes / MIB
        print(f"{Path(p).stem:15s} peak resident / peak live "
              f"{s.peak_resident_bytes / MIB / max(peak_live, 1e-9):6.3f}  "
              f"fresh {fresh:8.1f} MiB  faults {faults:7d}  madvise {s.madvise_count:5d}  "
              f"peak live {peak_live:7.1f} MiB")
        state.release()
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
