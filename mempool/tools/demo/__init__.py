"""``python -m mempool demo``: the proof, measured on this machine.

Runs three plain-numpy workloads (an MLP training loop with a drifting batch
size, large drifting-size temporaries, and small ``np.empty`` calls), each in
a fresh child process per allocator: numpy's default (glibc), glibc tuned as
an informed user would, mempool (``with mempool.use(mempool.default_pool()):``)
and jemalloc, mimalloc and tcmalloc through ``LD_PRELOAD`` where installed.
Allocators are interleaved in rounds so machine noise hits them alike.  The
demo prints a table per workload (time and its ratio to the default, page
faults, peak RSS against peak live data, RSS after freeing everything),
checks that every allocator produced bit-identical results, and writes PNG
plots and a JSON of every figure to the output folder.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import workloads as wl_mod
from .runner import ALL_ALLOCATORS, BLAS_VARS, INSTALL_HINT, discover, run_all

__all__ = ["main", "build_parser", "parse_pair", "describe_workloads", "chosen_allocators"]

#: The rows of ``--quick``: the comparison that matters, in a few seconds.
QUICK_ALLOCATORS = ("default", "mempool")


def parse_pair(text: str) -> tuple:
    """Parse ``"32-512"`` or ``"32,512"`` into a pair of ints."""
    for sep in ("-", ",", ":"):
        if sep in text:
            lo, hi = text.split(sep, 1)
            return int(lo), int(hi)
    raise argparse.ArgumentTypeError(f"expected LO-HI, got {text!r}")


def _csv(choices: Sequence[str]):
    def parse(text: str) -> List[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(choices)}")
        return names
    return parse


def describe_workloads() -> str:
    """The text of ``--help-workloads``: each workload, what it runs, its
    steps (default and ``--quick``) and the warm-up left out of the figures."""
    lines = ["workloads (--workloads NAME,...):"]
    for name, (cls, steps, quick, warmup) in wl_mod.WORKLOADS.items():
        per = (f"{cls.ops_per_step} ops per step, figures per op" if cls.ops_per_step > 1
               else "figures per step")
        extras = [per, f"{steps} steps ({quick} with --quick); the first {warmup} (at most "
                       "a quarter of them) are warm-up, left out of the figures"]
        if cls.has_floor:
            extras.append("has a floor row")
        extras.append("BLAS threads: the library's choice" if cls.uses_blas
                      else "runs with one BLAS thread (it makes no BLAS call)")
        lines.append(f"  {name}: {cls.description}")
        lines += [f"      {e}" for e in extras]
    return "\n".join(lines)


class _HelpWorkloads(argparse.Action):
    """``--help-workloads``: print :func:`describe_workloads` and exit 0."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(describe_workloads())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The demo's command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m mempool demo",
        description="Measure mempool against numpy's default allocator and its peers "
                    "on training/inference-style numpy workloads.")
    p.add_argument("--help-workloads", action=_HelpWorkloads,
                   help="describe the workloads (steps, warm-up, floor row) and exit")
    p.add_argument("--quick", action="store_true",
                   help="a few steps, one round, numpy's default and mempool only (unless "
                        "--allocators says otherwise): a smoke test of the demo, not a "
                        "measurement; about 10 s")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per workload (default: per workload, see --help-workloads)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per allocator (default 3; 1 with --quick)")
    p.add_argument("--batch-range", type=parse_pair, default=wl_mod.DEFAULT_BATCH_RANGE,
                   metavar="LO-HI", help="MLP batch size range (default 32-512)")
    p.add_argument("--allocators", type=_csv(ALL_ALLOCATORS), default=None,
                   help=f"comma-separated subset of {','.join(ALL_ALLOCATORS)} (default "
                        f"all; {','.join(QUICK_ALLOCATORS)} with --quick)")
    p.add_argument("--workloads", type=_csv(tuple(wl_mod.WORKLOADS)),
                   default=list(wl_mod.WORKLOADS),
                   help=f"comma-separated subset of {','.join(wl_mod.WORKLOADS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of every workload (default 0)")
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds to wait after freeing everything before reading RSS; "
                        "longer than the pool's decay (default 1.5)")
    p.add_argument("--out", type=Path, default=Path("demo-output"),
                   help="output folder for the JSON and PNGs (default ./demo-output)")
    p.add_argument("--blas-threads", type=int, default=None, metavar="N",
                   help="BLAS threads in every child (OPENBLAS/OMP/MKL_NUM_THREADS); "
                        "default: the library's own choice for the MLP, 1 for the workloads "
                        "that make no BLAS call.  1 makes the MLP robust to a busy machine, "
                        "where spinning BLAS threads swamp the allocator's share")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def blas_env(threads: Optional[int]) -> Dict[str, str]:
    """Environment pinning the BLAS thread count (empty: leave it alone)."""
    if threads is None:
        return {}
    n = str(max(1, threads))
    return {k: n for k in BLAS_VARS}


def chosen_allocators(args: argparse.Namespace) -> List[str]:
    """The rows to run: ``--allocators``, else all (``--quick``: default and mempool)."""
    if args.allocators is not None:
        return list(args.allocators)
    return list(QUICK_ALLOCATORS if args.quick else ALL_ALLOCATORS)


def _steps_for(args) -> Dict[str, int]:
    if args.steps is not None:
        return {w: max(2, args.steps) for w in args.workloads}
    idx = 2 if args.quick else 1
    return {w: wl_mod.WORKLOADS[w][idx] for w in args.workloads}


def _meta(args, steps: Dict[str, int], rounds: int, argv: Sequence[str],
          load_start: Sequence[float]) -> Dict[str, object]:
    """Run parameters and machine facts for the JSON (load: the machine's
    business during the run, the main source of timing noise)."""
    import numpy

    from .report import warmup_steps
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return {
        "command": "python -m mempool demo " + " ".join(argv),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(load_start),
        "loadavg_at_end": list(os.getloadavg()),
        "transparent_hugepage": thp.read_text().strip() if thp.exists() else "unknown",
        "steps": steps, "rounds": rounds, "seed": args.seed,
        "batch_range": list(args.batch_range), "settle_s": args.settle,
        "blas_threads": args.blas_threads,
        "warmup_steps": {w: warmup_steps(w, n) for w, n in steps.items()},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns 0 on success, 1 if a child failed or results differ."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.allocators = chosen_allocators(args)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report
    from .plots import plot as plot_files

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # logs and pipes: keep the tables on one line
    steps = _steps_for(args)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    allocators = discover(args.allocators)
    active = [a for a in allocators if a.available]
    for a in allocators:
        if not a.available:
            console.print(f"[yellow]skipping {a.name}:[/] {a.reason}")
    if not active:
        print("mempool demo: no allocator available to run", file=sys.stderr)
        return 1
    console.print(
        f"mempool demo: workloads {', '.join(args.workloads)}; allocators "
        f"{', '.join(a.name for a in active)}; {rounds} round(s); steps "
        f"{', '.join(f'{w}={n}' for w, n in steps.items())}")
    total = rounds * sum(a.runs(wl) for wl in args.workloads for a in active)
    started = time.perf_counter()
    load_start = os.getloadavg()
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=total)

        def on_progress(label: str, finished: bool) -> None:
            if finished:
                progress.advance(task)
            else:
                progress.update(task, description=label)

        records = run_all(allocators, args.workloads, steps, rounds, args.seed,
                          args.batch_range, args.settle, on_progress=on_progress,
                          extra_env=blas_env(args.blas_threads))
    names = [a.name for a in allocators]
    result = report.summarize(records, args.workloads, names)
    result["targets"] = report.evaluate_targets(result["summary"])
    report.render(console, result, allocators)

    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else plot_files(records, args.workloads, names, out_dir,
                                                result["summary"])
    payload = {
        "meta": _meta(args, steps, rounds, argv, load_start),
        "definitions": report.DEFINITIONS,
        "allocators": [a.describe() for a in allocators],
        "skipped": [{"name": a.name, "reason": a.reason} for a in allocators
                    if not a.available],
        "install_hint": INSTALL_HINT,
        **result,
        "plots": [p.name for p in plots],
        "records": records,
    }
    json_path = out_dir / "results.json"
    report.write_json(json_path, payload)
    elapsed = time.perf_counter() - started
    console.print(f"load average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
                  f"({os.cpu_count()} CPUs): a busy machine makes times noisy; ratios come "
                  f"from the same round")
    console.print(f"wrote {json_path}" + (f" and {len(plots)} plot(s)" if plots else "")
                  + f" in {out_dir}/ ({elapsed:.0f} s)")
    bad = bool(result["failed"]) or not all(c["identical"]
                                            for c in result["consistency"].values())
    return 1 if bad else 0
