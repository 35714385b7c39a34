"""What ``import mempool`` costs, from ``python -X importtime``: two (or more)
source trees compared in one run, interleaved, each import in a fresh process.

    python benches/import_cost.py [--rounds N] TREE [TREE...]

Each TREE is a checkout with its extensions built in place (``setup.py
build_ext --inplace``); it is put first on ``PYTHONPATH``, so the same
interpreter imports each tree's package.  numpy is imported first, so the
figures are mempool's own.  Prints, per tree, the median and quartiles over
the rounds of the cumulative microseconds of ``mempool`` and of
``mempool._core``, the ratio of the medians to the first tree's, and the
modules ``import mempool`` adds.  Timings swing with the machine's load:
read the ratio, and the load average printed with it; ``--callgrind`` also
counts the instructions of the import (valgrind; deterministic).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List


def _code(tree: Path, body: str, imports_mempool: bool = True) -> str:
    """numpy first, then ``body``; checks it imported this tree's mempool."""
    check = f"; assert mempool.__file__.startswith({str(tree)!r})" if imports_mempool else ""
    return "import numpy, sys; before = set(sys.modules); " + body + check


def import_times(tree: Path) -> Dict[str, int]:
    """Cumulative microseconds per module of one ``import mempool`` (numpy
    already imported)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           _code(tree, "import mempool")],
                          env=env, cwd="/", capture_output=True, text=True, check=True)
    out = {}
    for line in proc.stderr.splitlines():
        # import time: self [us] | cumulative | imported package
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[2]] = int(parts[1])
    return out


def added_modules(tree: Path) -> int:
    """How many modules ``import mempool`` adds to those numpy brought."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _code(
        tree, "import mempool; print(len(set(sys.modules) - before))")],
        env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


def instructions(tree: Path, body: str, imports_mempool: bool = True) -> int:
    """callgrind's instruction count of a python -c run of ``body``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, "-c", _code(tree, body, imports_mempool)],
                          env=env, cwd="/", capture_output=True, text=True, check=True)
    return int(proc.stderr.split("Collected : ")[1].split()[0])


def main(argv: List[str] | None = None) -> int:
    """Measure each tree ``--rounds`` times, interleaved; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--callgrind", action="store_true",
                    help="also count the import's instructions under valgrind")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    samples: Dict[Path, Dict[str, List[int]]] = {t: {"mempool": [], "mempool._core": []}
                                                  for t in trees}
    for r in range(args.rounds):
        for tree in trees[r % len(trees):] + trees[:r % len(trees)]:
            times = import_times(tree)
            for mod in samples[tree]:
                samples[tree][mod].append(times.get(mod, 0))
    print(f"load average: {os.getloadavg()[0]:.2f}; {args.rounds} rounds, interleaved")
    base = {mod: statistics.median(v) for mod, v in samples[trees[0]].items()}
    for tree in trees:
        cells = []
        for mod, values in samples[tree].items():
            q = statistics.quantiles(values, n=4)
            med = statistics.median(values)
            cells.append(f"{mod} {med:.0f} us (IQR {q[0]:.0f}-{q[2]:.0f}, "
                         f"x{med / base[mod]:.3f})")
        print(f"{tree}: " + "; ".join(cells) + f"; {added_modules(tree)} modules added")
        if args.callgrind:
            # the import alone: numpy + mempool minus numpy's own run
            n = instructions(tree, "import mempool") - instructions(tree, "pass", False)
            print(f"  callgrind: import mempool = {n / 1e6:.2f} M instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
