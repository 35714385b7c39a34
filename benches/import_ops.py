"""What ``import mempool`` costs after ``import numpy``, as an installed
package costs it (bytecode cached), for two or more source trees:

- the Python bytecode instructions it executes (a settrace opcode count:
  deterministic, so a change of a few hundred shows), and the modules it adds;
- the wall time, each sample a fresh process, trees interleaved: median and
  quartiles over the rounds (swings with the machine's load, printed).

    python benches/import_ops.py [--rounds N] TREE [TREE...]

Each TREE is a checkout with its extension built in place.  Unlike
benches/import_cost.py it ignores PYTHONDONTWRITEBYTECODE, so source
compilation (paid once per install) is not counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_OPS = """
import sys, numpy
before = set(sys.modules)
n = 0
def tracer(frame, event, arg):
    global n
    frame.f_trace_opcodes = True
    n += event == "opcode"
    return tracer
sys.settrace(tracer)
import mempool
sys.settrace(None)
print(n, len(set(sys.modules) - before))
"""
_TIME = ("import time, numpy; t = time.perf_counter(); import mempool; "
         "print((time.perf_counter() - t) * 1e6)")


def _run(tree: str, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=tree, PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd="/", check=True,
                          capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    """Print the opcode counts and the timing table of each tree."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--rounds", type=int, default=41)
    args = ap.parse_args(argv)
    for tree in args.trees:
        _run(tree, "import mempool")          # write the bytecode cache first
        ops, mods = _run(tree, _OPS).split()
        print(f"{tree}: {ops} bytecode instructions, {mods} modules added")
    times: dict[str, list[float]] = {t: [] for t in args.trees}
    for r in range(args.rounds):
        for tree in args.trees if r % 2 else args.trees[::-1]:
            times[tree].append(float(_run(tree, _TIME)))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds, interleaved")
    base = statistics.median(times[args.trees[0]])
    for tree, values in times.items():
        q = statistics.quantiles(values, n=4)
        med = statistics.median(values)
        print(f"{tree}: median {med:.0f} us (IQR {q[0]:.0f}-{q[2]:.0f}), x{med / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
