"""Write docs/examples/snapshot-example.json: a small real snapshot of a pool
with a recorded history (small and large arrays, a realloc, a free, movable
buffers moved by defragment, pages given back).

    python docs/examples/make_example_snapshot.py [OUT]
"""
import json
import re
import sys
from pathlib import Path

import numpy as np

import mempool
from mempool import history


def build(pool):
    """Arrays of every kind, some freed, one resized, buffers moved."""
    keep = [np.ones(100), np.zeros(3000), np.arange(50_000, dtype=np.float64)]
    big = np.ones((1200, 1000))                   # the huge-page heap (9.2 MB)
    temp = [np.empty(800) for _ in range(6)]
    del temp[::2]
    grown = np.zeros(10)
    grown.resize(20_000, refcheck=False)          # a realloc
    bufs = [pool.buffer(64 << 10) for _ in range(3)]
    bufs[0].free()                                # a hole below the others...
    pool.defragment()                             # ...which they slide into
    return keep, big, temp, grown, bufs


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("snapshot-example.json")
    pool = mempool.Pool(huge_min=4 << 20)         # the 2 MiB-granule heap too (opt-in)
    with mempool.use(pool), history.record(pool, stacks=4):
        held = build(pool)
        pool.trim()                               # pages given back
        snap = pool.snapshot()
    snap.dump(out)
    _machine_independent(out)
    print(f"{out}: {snap.summary()}")
    del held


def _machine_independent(path):
    """File names in the example relative to the repository or to
    site-packages, so the shipped file names no folder of the machine that
    wrote it."""
    data = json.loads(Path(path).read_text())
    root = str(Path(__file__).resolve().parents[2]) + "/"
    data["strings"] = [re.sub(r"^.*/site-packages/", "site-packages/", s.replace(root, ""))
                       for s in data["strings"]]
    Path(path).write_text(json.dumps(data, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv)
