"""``python -m mempool bench``: the benchmark suites, in one command.

Three parts, each optional:

1. the pytest-benchmark suite (``benches/test_numpy_bench.py``): numpy
   allocations of small, medium, large and drifting sizes under the default
   handler and under ``mempool.use(pool)``, in the same session; printed as
   ratios with page faults per call and RSS beside the times;
2. the peer comparison: the demo's workloads in one child process per
   allocator (numpy default, tuned glibc, mempool, and jemalloc, mimalloc,
   tcmalloc through ``LD_PRELOAD``), interleaved in rounds;
3. the C microbenchmark (``make bench-c``), when the source tree has one.

Everything measured is written to ``bench.json`` in the output folder.
``--real`` runs the real-library suite instead (:mod:`mempool.tools.realbench`,
with options of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from rich.console import Console
from rich.table import Table

from mempool.tools.demo import runner as demo_runner
from mempool.tools.demo import report as demo_report
from mempool.tools.demo import workloads as wl_mod

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benches" / "test_numpy_bench.py"

__all__ = ["main", "build_parser", "run_pytest_suite", "run_c_bench"]


def build_parser() -> argparse.ArgumentParser:
    """The bench command's parser."""
    p = argparse.ArgumentParser(
        prog="python -m mempool bench",
        description="Run mempool's benchmark suites and the comparison with peer allocators.")
    p.add_argument("--real", action="store_true",
                   help="run the real-library suite instead (scikit-learn, pandas, scipy and "
                        "numpy code under every allocator); it has options of its own: "
                        "python -m mempool bench --real --help")
    p.add_argument("--quick", action="store_true", help="short runs: finishes in about a minute")
    p.add_argument("--out", type=Path, default=Path("bench-output"),
                   help="output folder (default ./bench-output)")
    p.add_argument("--skip-pytest", action="store_true", help="skip the pytest-benchmark suite")
    p.add_argument("--skip-peers", action="store_true", help="skip the peer comparison")
    p.add_argument("--skip-c", action="store_true", help="skip the C microbenchmark")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of the peer comparison (default 3; 1 with --quick)")
    p.add_argument("--allocators", default=",".join(demo_runner.ALL_ALLOCATORS),
                   help="allocators of the peer comparison (comma-separated)")
    p.add_argument("--workloads", default=",".join(wl_mod.WORKLOADS),
                   help="workloads of the peer comparison (comma-separated)")
    p.add_argument("-k", dest="keyword", default=None,
                   help="pytest -k expression selecting benchmarks")
    return p


def run_pytest_suite(console: Console, out_dir: Path, quick: bool,
                     keyword: Optional[str]) -> Dict[str, Any]:
    """Run the pytest-benchmark suite in a subprocess; return per-group ratios."""
    if not SUITE.exists():
        return {"status": "skipped", "reason": f"{SUITE} not found (no source tree)"}
    json_path = out_dir / "pytest-benchmark.json"
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-q", "--benchmark-only",
           f"--benchmark-json={json_path}", "-p", "no:cacheprovider",
           "--benchmark-disable-gc", "--benchmark-sort=name"]
    if quick:
        cmd += ["--benchmark-max-time=0.05", "--benchmark-min-rounds=3"]
    if keyword:
        cmd += ["-k", keyword]
    console.print(f"[bold]pytest-benchmark suite[/]: {' '.join(cmd[1:4])} ...")
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out_dir / "pytest-benchmark.log").write_text(proc.stdout + proc.stderr)
    if not json_path.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return {"status": "error", "returncode": proc.returncode, "tail": tail}
    data = json.loads(json_path.read_text())
    groups: Dict[str, Dict[str, Dict[str, float]]] = {}
    for b in data.get("benchmarks", []):
        alloc = b.get("extra_info", {}).get("allocator") or b["param"]
        groups.setdefault(b["group"] or b["name"], {})[alloc] = {
            "median_s": b["stats"]["median"],
            "minflt_per_call": b.get("extra_info", {}).get("minflt_per_call"),
            "rss_mb": b.get("extra_info", {}).get("rss_mb"),
        }
    rows = []
    for group, by_alloc in sorted(groups.items()):
        d, m = by_alloc.get("default"), by_alloc.get("mempool")
        rows.append({"group": group, "default": d, "mempool": m,
                     "ratio": (m["median_s"] / d["median_s"]) if d and m else None})
    return {"status": "ok" if proc.returncode == 0 else "error",
            "returncode": proc.returncode, "seconds": time.perf_counter() - started,
            "rows": rows, "json": str(json_path)}


def _fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def render_pytest(console: Console, result: Dict[str, Any]) -> None:
    """Print the suite's default-vs-mempool table."""
    if result["status"] == "skipped":
        console.print(f"  [yellow]skipped:[/] {result['reason']}")
        return
    if "rows" not in result:
        console.print(f"  [red]failed (status {result.get('returncode')}):[/]")
        for line in result.get("tail", []):
            console.print(f"    {line}", markup=False, highlight=False)
        return
    t = Table(title="numpy allocations: default handler vs mempool.use(pool) (same session)",
              title_justify="left", header_style="bold")
    t.add_column("benchmark", no_wrap=True)
    for col in ("default", "mempool", "x default", "faults/call default",
                "faults/call mempool", "RSS MB default", "RSS MB mempool"):
        t.add_column(col, justify="right")
    for row in result["rows"]:
        d, m = row["default"] or {}, row["mempool"] or {}
        ratio = row["ratio"]
        style = "green" if ratio is not None and ratio < 0.95 else (
            "red" if ratio is not None and ratio > 1.05 else "")
        ratio_txt = "-" if ratio is None else f"{ratio:.2f}x"
        t.add_row(row["group"], _fmt_seconds(d.get("median_s")),
                  _fmt_seconds(m.get("median_s")) if m else "not built",
                  f"[{style}]{ratio_txt}[/]" if style else ratio_txt,
                  "-" if d.get("minflt_per_call") is None else f"{d['minflt_per_call']:.1f}",
                  "-" if m.get("minflt_per_call") is None else f"{m['minflt_per_call']:.1f}",
                  "-" if d.get("rss_mb") is None else f"{d['rss_mb']:.0f}",
                  "-" if m.get("rss_mb") is None else f"{m['rss_mb']:.0f}")
    console.print(t)
    if result["status"] != "ok":
        console.print(f"  [red]pytest exited with status {result['returncode']}[/] "
                      f"(see pytest-benchmark.log)")


def run_peers(console: Console, allocators: Sequence[str], workloads: Sequence[str],
              quick: bool, rounds: Optional[int]) -> Dict[str, Any]:
    """Run the demo's workloads under every allocator; print and return the figures."""
    allocs = demo_runner.discover(allocators)
    idx = 2 if quick else 1
    steps = {w: wl_mod.WORKLOADS[w][idx] for w in workloads}
    n_rounds = rounds if rounds is not None else (1 if quick else 3)
    console.print(f"[bold]peer comparison[/]: {', '.join(workloads)} under "
                  f"{', '.join(a.name for a in allocs if a.available)}, {n_rounds} round(s)")
    records = demo_runner.run_all(allocs, workloads, steps, n_rounds, seed=0,
                                  batch_range=wl_mod.DEFAULT_BATCH_RANGE, settle_s=1.5)
    names = [a.name for a in allocs]
    result = demo_report.summarize(records, workloads, names)
    result["targets"] = demo_report.evaluate_targets(result["summary"])
    demo_report.render(console, result, allocs)
    result["allocators"] = [a.describe() for a in allocs]
    result["steps"], result["rounds"] = steps, n_rounds
    return result


def run_c_bench(console: Console, out_dir: Path) -> Dict[str, Any]:
    """Run ``make bench-c`` when the source tree defines it; return its output."""
    makefile = ROOT / "Makefile"
    if not makefile.exists() or not (ROOT / "benches" / "c").is_dir():
        return {"status": "skipped", "reason": "no Makefile or benches/c in the source tree"}
    probe = subprocess.run(["make", "-n", "bench-c"], cwd=ROOT, capture_output=True, text=True)
    if probe.returncode != 0:
        return {"status": "skipped", "reason": "make has no bench-c target: "
                + (probe.stderr.strip().splitlines() or [""])[-1]}
    console.print("[bold]C microbenchmark[/]: make bench-c")
    proc = subprocess.run(["make", "--no-print-directory", "bench-c"], cwd=ROOT,
                          capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    (out_dir / "bench-c.txt").write_text(text)
    console.print(text.rstrip(), markup=False, highlight=False)
    return {"status": "ok" if proc.returncode == 0 else "error",
            "returncode": proc.returncode, "output": text}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the selected benchmark parts; 0 when every part that ran succeeded
    (``--real``: the real-library suite, :mod:`mempool.tools.realbench`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--real" in argv:
        from mempool.tools import realbench
        return realbench.main(argv)
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # logs and pipes: keep the tables on one line
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    allocators = [a.strip() for a in args.allocators.split(",") if a.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in wl_mod.WORKLOADS]
    if unknown:
        print(f"mempool bench: unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    payload: Dict[str, Any] = {"argv": argv, "cwd": os.getcwd()}
    failed = False
    if not args.skip_pytest:
        res = run_pytest_suite(console, out_dir, args.quick, args.keyword)
        render_pytest(console, res)
        payload["pytest"] = res
        failed |= res["status"] == "error"
    if not args.skip_peers:
        try:
            res = run_peers(console, allocators, workloads, args.quick, args.rounds)
        except ValueError as exc:  # unknown allocator name
            print(f"mempool bench: {exc}", file=sys.stderr)
            return 2
        payload["peers"] = res
        failed |= bool(res["failed"])
    if not args.skip_c:
        res = run_c_bench(console, out_dir)
        if res["status"] == "skipped":
            console.print(f"[bold]C microbenchmark[/]: [yellow]skipped:[/] {res['reason']}")
        payload["c_bench"] = res
        failed |= res["status"] == "error"
    demo_report.write_json(out_dir / "bench.json", payload)
    console.print(f"wrote {out_dir / 'bench.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
