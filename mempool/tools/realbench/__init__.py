"""``python -m mempool bench --real``: the real-library benchmark suite.

Ordinary scikit-learn, pandas, scipy and numpy code (:mod:`.workloads`) run
unchanged under numpy's default allocator, tuned glibc, mempool (installed at
process start, as ``python -m mempool run`` does) and jemalloc, mimalloc,
tcmalloc (``LD_PRELOAD``), one child process per run, in interleaved rounds;
medians of wall and CPU time, page faults, peak RSS and RSS after the work,
with the results' digests checked identical across allocators.  Prints a
table and the targets (time, faults, peak over base, RSS after), writes ``real.json`` and ``real.png``.

``--arrow`` runs the pandas 3 + pyarrow workload under Arrow's own pools
and mempool instead (:mod:`.arrow`).

``--record-corpus`` instead records every workload, at its corpus size, as an
allocation trace (the tuning corpus, ``benches/traces/real/`` of a source
checkout: :mod:`mempool.tools.corpus`), which ``python -m mempool replay
PATH`` replays in C under every allocator.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mempool.tools import corpus
from mempool.tools.corpus import REAL_DIR as CORPUS_DIR

__all__ = ["main", "build_parser", "CORPUS_DIR", "record_corpus"]
INSTALL = "pip install 'mempool[real]'  (scikit-learn, pandas, scipy, pyarrow, xarray)"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m mempool bench --real``."""
    from . import runner, workloads
    p = argparse.ArgumentParser(
        prog="python -m mempool bench --real",
        description="Run the real-library suite under every allocator (one process per "
                    "run, interleaved rounds) and compare with the targets.")
    p.add_argument("--real", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="the workloads' small sizes (seconds per round)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help="comma-separated workloads (default all: "
                        + ",".join(workloads.WORKLOADS) + ")")
    p.add_argument("--allocators", default=",".join(runner.ALLOCATORS),
                   help="comma-separated allocators (default all; missing peers skipped)")
    p.add_argument("--out", type=Path, default=Path("bench-output"),
                   help="output folder for real.json and real.png (default ./bench-output)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--markdown", action="store_true",
                   help="also print the tables as Markdown")
    p.add_argument("--from-json", type=Path, default=None, metavar="REAL_JSON",
                   help="re-render the table, targets and plot of an earlier run's real.json")
    p.add_argument("--record-corpus", action="store_true",
                   help="record the workloads as allocation traces (the tuning corpus) instead")
    p.add_argument("--corpus-dir", type=Path, default=None,
                   help=f"with --record-corpus: where to write NAME.trace (default the "
                        f"corpus, {CORPUS_DIR})")
    return p


def _names(text: Optional[str], choices: Sequence[str], what: str) -> List[str]:
    if text is None:
        return list(choices)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise ValueError(f"unknown {what} {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(choices)}")
    return names


def record_corpus(names: Sequence[str], out_dir: Path, seed: int = 0, console=None) -> List[Path]:
    """Record each workload at its corpus size into ``out_dir/NAME.trace``."""
    from mempool import trace as trace_mod

    from . import runner
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out_dir / f"{name}.trace"
        runner.record_trace(name, path, seed=seed)
        s = trace_mod.load(path).summary()
        if console is not None:
            console.print(f"recorded {name}: {s['events']} events, peak live "
                          f"{s['peak_live_bytes'] / (1 << 20):.1f} MiB -> {path} "
                          f"({path.stat().st_size // 1024} KiB)")
        paths.append(path)
    return paths


def _meta(args, workloads: Sequence[str], allocators, rounds: int) -> Dict[str, Any]:
    import numpy
    versions = {"numpy": numpy.__version__}
    for lib in ("sklearn", "pandas", "scipy", "pyarrow", "xarray"):
        try:
            versions[lib] = __import__(lib).__version__
        except ImportError:
            versions[lib] = None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m mempool bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"]
                                                            else sys.argv[1:]),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor(), "python": platform.python_version(),
            "versions": versions, "rounds": rounds, "quick": args.quick, "seed": args.seed,
            "workloads": list(workloads),
            "allocators": [a.describe() for a in allocators]}


def _rerender(console, args) -> int:
    """Table, targets and plot again from a saved ``real.json`` (its records)."""
    import json
    try:
        old = json.loads(args.from_json.read_text())
        records, meta = old["records"], old["meta"]
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"cannot read {args.from_json}: {exc}", style="red", markup=False)
        return 2
    names = [a["name"] for a in meta["allocators"] if a["available"]]
    _show(console, args, records, meta["workloads"], names)
    return 0


def _show(console, args, records, workloads, allocators):
    """Summarize the records, print the tables, write the plot; return
    (summary, targets, png path)."""
    from . import report
    summary = report.summarize(records, workloads, allocators)
    targets = report.evaluate_targets(summary)
    report.render(console, summary, targets)
    if args.markdown:
        print(report.markdown(report.HEADERS, report.table_rows(summary)))
        print()
        print(report.markdown(report.TARGET_HEADERS, report.target_rows(targets)))
    args.out.mkdir(parents=True, exist_ok=True)
    png = report.plot(summary, args.out / "real.png")
    console.print(f"wrote {png}")
    return summary, targets, png


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m mempool bench --real``; the exit status."""
    from rich.console import Console

    from mempool.tools.demo import runner as demo_runner

    from . import report, runner, workloads
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--arrow" in argv:          # the pandas 3 + pyarrow workload (mempool.arrow)
        from . import arrow
        return arrow.main(argv)
    args = build_parser().parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        names = _names(args.only, list(workloads.WORKLOADS), "workload(s)")
        alloc_names = _names(args.allocators, runner.ALLOCATORS, "allocator(s)")
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    missing = runner.missing_libraries(names)
    if missing:
        console.print(f"the real-library suite needs {', '.join(missing)}; "
                      f"install them with: {INSTALL}", style="red", markup=False)
        return 2
    if args.record_corpus:
        try:
            out_dir = args.corpus_dir or corpus.trace_dir(real=True)
        except corpus.CorpusMissing as exc:
            console.print(f"give --corpus-dir; {exc}", style="red", markup=False)
            return 2
        try:
            record_corpus(names, out_dir, args.seed, console)
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/]")
            return 1
        return 0
    if args.from_json is not None:
        return _rerender(console, args)
    rounds = args.rounds or (1 if args.quick else 3)
    if rounds < 1:
        console.print(f"[red]--rounds must be >= 1, got {rounds}[/]")
        return 2
    allocators = demo_runner.discover(alloc_names)
    for a in allocators:
        if not a.available:
            console.print(f"[yellow]{a.name} skipped: {a.reason}[/]")
    with console.status("starting") as status:
        records = runner.run_suite(allocators, names, rounds, args.quick, args.seed,
                                   on_progress=lambda label: status.update(label))
    active = [a.name for a in allocators if a.available]
    summary, targets, _ = _show(console, args, records, names, active)
    mismatches = report.check_digests(records)
    payload = {"meta": _meta(args, names, allocators, rounds), "definitions": report.DEFINITIONS,
               "summary": summary, "targets": targets, "digest_mismatches": mismatches,
               "records": records}
    report.write_json(args.out / "real.json", payload)
    console.print(f"wrote {args.out / 'real.json'}")
    for err in summary["errors"]:
        console.print(f"[red]{err['workload_name']} under {err['allocator']} (round "
                      f"{err['round']}) failed: {err['error']}[/]\n{err.get('stderr_tail') or ''}")
    for msg in mismatches:
        console.print(f"[bold red]RESULTS DIFFER: {msg}[/]")
    return 1 if (mismatches or summary["errors"]) else 0
