"""Adversarial allocation patterns as seeded, synthetic traces.

A stress run is a generated trace fed to the same C replay engine as a
recorded one (:mod:`mempool.tools.harness`), so it is deterministic and performs
exactly the same requests under every allocator.  Every pattern ends by
freeing most of what is live, so the replay can watch resident memory come
back (the pool's decay) while the rest is still held.

Patterns (``generate(pattern, seed, rounds, scale)``; ``scale`` 1.0 peaks
at roughly 200-300 MB live):

``drift``        the headline run: a working set of blocks (80% 4 KiB-1 MiB,
                 20% 64 B-4 KiB); each round a random quarter is freed and
                 replaced by blocks 1% larger than the round before, so
                 freed holes are always a little too small for what comes.
``sawtooth``     fill to a random peak, free everything but 5% survivors
                 that pin their neighbourhood, repeat.
``growing``      8 streams; each round every stream allocates a block 1%
                 larger than its last and then frees the last.
``interleaved``  short- and long-lived blocks allocated alternately; the
                 short ones die at once, the long ones many rounds later.
``random``       sizes log-uniform 64 B-64 MiB, random frees, live capped.
``scatter``      200,000 arrays of 64 B-4 KiB (uniform), then the usual end
                 keeps a random 10%: survivors scattered over every slab
                 page, the pattern meshing (``--mesh``) compacts.
"""

from __future__ import annotations

import math
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from mempool.tools import harness
from mempool.trace import ALLOC, EVENT_DTYPE, FREE, Trace

__all__ = ["PATTERNS", "DEFAULT_ROUNDS", "generate"]

KIB, MIB = 1 << 10, 1 << 20


class _Builder:
    """Accumulates events and tracks live blocks (id -> size)."""

    def __init__(self) -> None:
        self.ops: List[int] = []
        self.ids: List[int] = []
        self.sizes: List[int] = []
        self.live: Dict[int, int] = {}
        self.live_bytes = 0
        self.next_id = 0

    def alloc(self, size: int) -> int:
        """Allocate a new block; return its id."""
        bid = self.next_id
        self.next_id += 1
        self.ops.append(ALLOC)
        self.ids.append(bid)
        self.sizes.append(int(size))
        self.live[bid] = int(size)
        self.live_bytes += int(size)
        return bid

    def free(self, bid: int) -> None:
        """Free a live block."""
        self.ops.append(FREE)
        self.ids.append(bid)
        self.sizes.append(0)
        self.live_bytes -= self.live.pop(bid)

    def free_fraction(self, rng: np.random.Generator, fraction: float) -> None:
        """Free a random ``fraction`` of the live blocks."""
        ids = list(self.live)
        k = int(len(ids) * fraction)
        for i in rng.choice(len(ids), size=k, replace=False):
            self.free(ids[int(i)])

    def trace(self, meta: Dict) -> Trace:
        """The events as a Trace (time = event index: synthetic)."""
        ev = np.zeros(len(self.ops), dtype=EVENT_DTYPE)
        ev["t_ns"] = np.arange(len(self.ops))
        ev["op"] = self.ops
        ev["id"] = self.ids
        ev["size"] = self.sizes
        return Trace(ev, self.next_id, meta)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))


def _drift(b: _Builder, rng, rounds: int, scale: float) -> None:
    blocks = max(16, int(256 * scale))

    def sizes(n: int, r: int) -> np.ndarray:
        small = rng.random(n) < 0.2
        s = np.where(small, _log_uniform(rng, 64, 4 * KIB, n),
                     _log_uniform(rng, 4 * KIB, 1 * MIB, n))
        return (s * 1.01 ** r).astype(np.int64)

    for s in sizes(blocks, 0):
        b.alloc(s)
    for r in range(1, rounds):
        before = len(b.live)
        b.free_fraction(rng, 0.25)
        for s in sizes(before - len(b.live), r):
            b.alloc(s)


def _sawtooth(b: _Builder, rng, rounds: int, scale: float) -> None:
    cap = 256 * MIB * scale
    for _ in range(rounds):
        peak = cap * rng.uniform(0.3, 1.0)
        while b.live_bytes < peak:
            b.alloc(int(_log_uniform(rng, 4 * KIB, 4 * MIB, 1)[0]))
        survivors = set(rng.choice(list(b.live), size=max(1, len(b.live) // 20),
                                   replace=False).tolist())
        for bid in [i for i in b.live if i not in survivors]:
            b.free(bid)


def _growing(b: _Builder, rng, rounds: int, scale: float) -> None:
    streams = 8
    base = _log_uniform(rng, 64 * KIB, 1 * MIB * scale, streams)
    last = [b.alloc(int(s)) for s in base]
    for r in range(1, rounds):
        for k in range(streams):
            new = b.alloc(int(base[k] * 1.01 ** r))
            b.free(last[k])
            last[k] = new


def _interleaved(b: _Builder, rng, rounds: int, scale: float) -> None:
    lifetime = 20
    per_round = max(4, int(16 * scale))
    long_lived: List[List[int]] = []
    for r in range(rounds):
        short, keep = [], []
        for s in _log_uniform(rng, 16 * KIB, 2 * MIB, 2 * per_round).astype(np.int64):
            (short if len(short) <= len(keep) else keep).append(b.alloc(int(s)))
        for bid in short:
            b.free(bid)
        long_lived.append(keep)
        if len(long_lived) > lifetime:
            for bid in long_lived.pop(0):
                b.free(bid)


def _random(b: _Builder, rng, rounds: int, scale: float) -> None:
    cap = 256 * MIB * scale
    hi = max(64 * KIB, 64 * MIB * min(1.0, scale))
    for _ in range(rounds):
        for s in _log_uniform(rng, 64, hi, 32).astype(np.int64):
            b.alloc(int(s))
            while b.live_bytes > cap:
                ids = list(b.live)
                b.free(ids[int(rng.integers(len(ids)))])
        b.free_fraction(rng, 0.3)


def _scatter(b: _Builder, rng, rounds: int, scale: float) -> None:
    per_round = max(1, int(200_000 * scale) // rounds)
    for _ in range(rounds):
        for s in rng.integers(64, 4097, size=per_round):
            b.alloc(int(s))


PATTERNS = {"drift": _drift, "sawtooth": _sawtooth, "growing": _growing,
            "interleaved": _interleaved, "random": _random, "scatter": _scatter}
#: Rounds per pattern at full size.
DEFAULT_ROUNDS = {"drift": 150, "sawtooth": 12, "growing": 300,
                  "interleaved": 200, "random": 100, "scatter": 2}


def generate(pattern: str = "drift", seed: int = 0, rounds: Optional[int] = None,
             scale: float = 1.0, keep: float = 0.1) -> Trace:
    """The seeded trace of ``pattern``; it ends by freeing all but a random
    ``keep`` fraction of the live blocks (the tail the replay watches)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown stress pattern {pattern!r}; choose from "
                         f"{', '.join(PATTERNS)}")
    rounds = DEFAULT_ROUNDS[pattern] if rounds is None else int(rounds)
    if rounds < 1 or not 0 < scale <= 16 or not 0 <= keep <= 1:
        raise ValueError(f"bad stress parameters: rounds={rounds} (>= 1), "
                         f"scale={scale} (0-16], keep={keep} [0-1]")
    rng = np.random.default_rng([seed, list(PATTERNS).index(pattern)])
    b = _Builder()
    PATTERNS[pattern](b, rng, rounds, scale)
    b.free_fraction(rng, 1.0 - keep)
    return b.trace({"pattern": pattern, "seed": seed, "rounds": rounds,
                    "scale": scale, "keep": keep, "synthetic": True})


# ------------------------------------------------------------ command line --

def add_arguments(p) -> None:
    """The ``python -m mempool stress`` options."""
    p.add_argument("--pattern", default="drift", choices=[*PATTERNS, "all"],
                   help="which pattern (default drift, the drifting-size run)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds (default per pattern: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_ROUNDS.items()) + ")")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the working set; 1.0 peaks at ~200-300 MB live")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to watch resident memory after the last event (default 3)")
    p.add_argument("--mesh", action="store_true",
                   help="the mempool row uses Pool(mesh=True) (see README, Meshing)")
    p.add_argument("--quick", action="store_true",
                   help="a small run (scale 0.25, a third of the rounds, settle 1.5 s)")
    harness.add_common_arguments(p)


def command(ns) -> int:
    """Run ``python -m mempool stress`` from parsed options; exit status."""
    from rich.console import Console

    console = Console()
    scale, settle = (0.25, min(ns.settle, 1.5)) if ns.quick else (ns.scale, ns.settle)
    patterns = list(PATTERNS) if ns.pattern == "all" else [ns.pattern]
    report = {"meta": harness.meta(), "patterns": {}}
    failures = 0
    for pattern in patterns:
        rounds = (ns.rounds if ns.rounds is not None
                  else DEFAULT_ROUNDS[pattern] // (3 if ns.quick else 1))
        params = {"pattern": pattern, "seed": ns.seed, "rounds": rounds, "scale": scale}
        try:
            s = generate(**params).summary()
        except ValueError as exc:
            print(f"mempool stress: {exc}", file=sys.stderr)
            return 2
        rows = harness.run_rows({"stress": params, "settle_s": settle,
                                 "mesh": bool(getattr(ns, "mesh", False))}, ns.allocators,
                               ns.repeat,
                               on_row=lambda r: console.print(
                                   f"  {pattern} · {r['allocator']}: {r['status']}",
                                   style="dim"))
        harness.render(rows, f"stress {pattern} (seed {ns.seed}, {rounds} rounds, scale "
                            f"{scale:g}): {s['events']} events, peak live "
                            f"{s['peak_live_bytes'] / harness.MIB:.1f} MiB, "
                            f"{s['final_live_bytes'] / harness.MIB:.1f} MiB left live",
                      console)
        if ns.markdown:
            print(harness.markdown(rows))
        report["patterns"][pattern] = {"params": params, "summary": s, "rows": rows}
        failures += harness.report_failures("mempool stress", f"pattern {pattern}", rows)
    harness.write_json(ns.json, report)
    return 1 if failures else 0


def build_parser():
    """The parser of ``python -m mempool stress``."""
    import argparse
    p = argparse.ArgumentParser(
        prog="python -m mempool stress",
        description="Generate a seeded adversarial trace (default: drifting sizes with "
                    "random frees) and replay it under each allocator.")
    add_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mempool stress ARGS``: parse ``argv`` and run; exit status."""
    return command(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
