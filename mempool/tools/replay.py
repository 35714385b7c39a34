"""Replay an allocation trace against the pool, malloc and the peer allocators.

Policy only: the replay itself is C (``csrc/tools/replay.c``, through
``mempool.tools._replay.ReplayState``).  Each allocator gets a fresh child process
(``python -m mempool.tools.replay --child CONFIG``, run by
:func:`mempool.tools.harness.run_rows`, which ``stress`` shares): the pool
row replays into a new ``Pool``; every other row into libc ``malloc``,
redirected to a peer by ``LD_PRELOAD``.  Whole-process resident memory is therefore comparable across
rows: every child runs the same interpreter, numpy and tables, and the
figures are deltas over the RSS measured just before the first event.

Per row the child reports peak RSS / peak live, the pool's own peak
resident (pool row), resident after the trace ends (after ``settle_s``,
with the blocks the trace leaves live still held, and no ``trim()``), the
seconds until resident came back within 10% of live (+1 MiB for the
interpreter's own noise), and the time per event.  Times are shown only as
ratios to the malloc row of the same run.

The corpus's traces (``benches/traces/NAME.trace`` of a source checkout:
:mod:`mempool.tools.corpus`) can be named instead of a path;
:func:`record_workload` re-records them from the demo's workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from mempool.tools import corpus, harness
# Shared with stress; re-exported here, where they were first defined.
from mempool.tools.harness import (ALLOCATORS, DEFAULT_ALLOCATORS, MIB,  # noqa: F401
                                   add_ratios, markdown, render, replay_here, run_rows)

__all__ = ["ALLOCATORS", "DEFAULT_ALLOCATORS", "resolve_trace",
           "replay_here", "run_rows", "add_ratios", "render", "record_workload", "main"]

def resolve_trace(name_or_path: str) -> Path:
    """A trace file path: an existing path, or the name of a corpus trace
    (FileNotFoundError otherwise, saying what to do when the corpus is
    missing: mempool installed from a wheel)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    try:
        named = corpus.trace_dir() / f"{name_or_path}.trace"
    except corpus.CorpusMissing as exc:
        raise FileNotFoundError(f"no trace file {name_or_path!r}; named traces need the "
                                f"corpus, and {exc}") from None
    if named.is_file():
        return named
    raise FileNotFoundError(f"no trace file {name_or_path!r} and no corpus trace of "
                            f"that name (corpus: {', '.join(corpus.names()) or 'none'})")


def _child(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Body of a child process: load (or generate) the trace, replay it."""
    from mempool import trace as trace_mod
    if "stress" in cfg:
        from mempool.tools import stress
        trace = stress.generate(**cfg["stress"])
    else:
        trace = trace_mod.load(cfg["trace"])
    pool = None
    if cfg["backend"] == "pool":
        import mempool
        pool = mempool.Pool(mesh=bool(cfg.get("mesh", False)))
    out = replay_here(trace, pool, settle_s=cfg["settle_s"])
    if pool is not None:
        out["pool_check"] = pool.check()
        pool.close()
    return out


def record_workload(name: str, out: Path, steps: Optional[int] = None,
                    seed: int = 0, timeout_s: float = 600.0) -> Path:
    """Re-record a demo workload (``mlp``, ``temporaries``...) into ``out``
    in a fresh child process, with a fresh pool, as the demo's child runs it."""
    from mempool.tools.demo import runner
    from mempool.tools.demo import workloads as wl_mod
    if name not in wl_mod.WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(wl_mod.WORKLOADS)}")
    steps = wl_mod.WORKLOADS[name][1] if steps is None else int(steps)
    cfg = {"workload": name, "steps": steps, "seed": seed, "out": str(out)}
    env = runner.child_env(runner.discover(["mempool"])[0])
    subprocess.run([sys.executable, "-m", "mempool.tools.replay", "--record-child",
                    json.dumps(cfg)], env=env, check=True, timeout=timeout_s)
    return Path(out)


def _record_child(cfg: Dict[str, Any]) -> None:
    """Body of the recording child: the demo child's sequence under record()."""
    import gc

    import mempool
    from mempool import trace as trace_mod
    from mempool.tools.demo import workloads as wl_mod
    pool = mempool.Pool()
    meta = {"workload": cfg["workload"], "steps": cfg["steps"], "seed": cfg["seed"],
            "recorded_by": "python -m mempool replay --record " + cfg["workload"]}
    with trace_mod.record(cfg["out"], pool=pool, meta=meta):
        wl = wl_mod.make(cfg["workload"], cfg["steps"], cfg["seed"])
        for i in range(cfg["steps"]):
            wl.step(i)
        wl.close()
        del wl
        gc.collect()


def child_main(argv: Optional[Sequence[str]] = None) -> int:
    """Child entry points (internal, ``python -m mempool.tools.replay``):
    ``--child CONFIG OUT`` and ``--record-child CONFIG``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "--child":
        result = _child(json.loads(args[1]))
        tmp = args[2] + ".tmp"
        Path(tmp).write_text(json.dumps(result))
        os.replace(tmp, args[2])
        return 0
    if len(args) == 2 and args[0] == "--record-child":
        _record_child(json.loads(args[1]))
        return 0
    print("internal module: use python -m mempool replay", file=sys.stderr)
    return 2


# ------------------------------------------------------------ command line --


def add_replay_arguments(p) -> None:
    """The ``python -m mempool replay`` options."""
    p.add_argument("traces", nargs="*", metavar="TRACE",
                   help="trace files, or names of the corpus's traces (default: every one: "
                        + (", ".join(corpus.names()) or "none here: " + corpus.HOW) + ")")
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds to watch resident memory after the last event (default 1.5)")
    p.add_argument("--record", metavar="WORKLOADS", default=None,
                   help="instead of replaying, re-record demo workloads (comma-separated, "
                        "e.g. mlp,temporaries) into --out-dir")
    p.add_argument("--steps", type=int, default=None,
                   help="with --record: steps (default: the demo's)")
    p.add_argument("--seed", type=int, default=0, help="with --record: seed (default 0)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help=f"with --record: where to write NAME.trace (default the corpus, "
                        f"{corpus.TRACE_DIR})")
    harness.add_common_arguments(p)


def replay_command(ns) -> int:
    """Run ``python -m mempool replay`` from parsed options; exit status."""
    from rich.console import Console

    from mempool import trace as trace_mod
    console = Console()
    if ns.record:
        try:
            out_dir = ns.out_dir or corpus.trace_dir()
        except corpus.CorpusMissing as exc:
            print(f"mempool replay --record: give --out-dir; {exc}", file=sys.stderr)
            return 2
        for name in [n.strip() for n in ns.record.split(",") if n.strip()]:
            out = out_dir / f"{name}.trace"
            try:
                record_workload(name, out, ns.steps, ns.seed)
            except (ValueError, subprocess.CalledProcessError) as exc:
                print(f"mempool replay --record {name}: {exc}", file=sys.stderr)
                return 2
            s = trace_mod.load(out).summary()
            console.print(f"recorded {name}: {s['events']} events, peak live "
                          f"{s['peak_live_bytes'] / MIB:.1f} MiB -> {out} "
                          f"({out.stat().st_size // 1024} KiB)")
        return 0
    names = ns.traces
    if not names:
        try:
            names = [p.stem for p in sorted(corpus.trace_dir().glob("*.trace"))]
        except corpus.CorpusMissing as exc:
            print(f"mempool replay: no TRACE given, and {exc}", file=sys.stderr)
            return 2
    report: Dict[str, Any] = {"meta": harness.meta(), "traces": {}}
    failures = 0
    for name in names:
        try:
            path = resolve_trace(name)
            tr = trace_mod.load(path)
        except (FileNotFoundError, trace_mod.TraceError) as exc:
            print(f"mempool replay: {exc}", file=sys.stderr)
            return 2
        s = tr.summary()
        cfg = {"trace": str(path.resolve()), "settle_s": ns.settle}
        rows = run_rows(cfg, ns.allocators, ns.repeat, on_row=lambda r: console.print(
            f"  {name} · {r['allocator']}: {r['status']}", style="dim"))
        render(rows, f"replay of {path.name}: {s['events']} events, peak live "
                     f"{s['peak_live_bytes'] / MIB:.1f} MiB", console)
        if ns.markdown:
            print(markdown(rows))
        pool_row = next((r for r in rows if r["allocator"] == "mempool"
                         and r["status"] == "ok"), None)
        if pool_row and tr.meta.get("pool_peak_resident_bytes"):
            rec = tr.meta["pool_peak_resident_bytes"]
            console.print(
                f"  vs the recorded in-process run: peak live {pool_row['peak_live_bytes']:,}"
                f" (trace {s['peak_live_bytes']:,}); pool peak resident "
                f"{pool_row['pool_peak_resident'] / MIB:.1f} MiB vs {rec / MIB:.1f} MiB "
                f"recorded ({pool_row['pool_peak_resident'] / rec - 1:+.1%})")
        report["traces"][name] = {"summary": s, "trace_meta": tr.meta, "rows": rows}
        failures += harness.report_failures("mempool replay", path.name, rows)
    harness.write_json(ns.json, report)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m mempool replay``."""
    p = argparse.ArgumentParser(
        prog="python -m mempool replay",
        description="Replay recorded allocation traces (files, or the names of the "
                    "corpus's traces) in C under each allocator, one child process each; print "
                    "peak/final resident and time ratios.")
    add_replay_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mempool replay ARGS``: parse ``argv`` and run; exit status."""
    return replay_command(build_parser().parse_args(
        list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(child_main())
