"""``python -m mempool bench --real --arrow``: the pandas 3 + pyarrow workload
(:mod:`.arrow_workload`) under Arrow's own pools and under mempool.

Rows (each run a child process of its own, rounds interleaved, order
rotated each round):

- ``arrow-mimalloc``, ``arrow-jemalloc``, ``arrow-system``: numpy's default
  handler, Arrow's pool chosen by ``ARROW_DEFAULT_MEMORY_POOL`` (mimalloc is
  pyarrow's default on Linux);
- ``mempool-numpy``: mempool for numpy only (``MEMPOOL_INSTALL=1``), Arrow's
  default pool (what installing mempool gave before mempool.arrow);
- ``mempool``: mempool for both (``MEMPOOL_INSTALL=1 MEMPOOL_ARROW=1``).

Medians of wall and CPU time, page faults, peak RSS and RSS after the work
(after a 1.5 s idle, without trim), absolute and above the child's level
after its imports; the outputs' digests must agree.  Targets (issue 23):
mempool's peak RSS and RSS after <= the best of the Arrow rows and
``mempool-numpy``, its time <= 1.02x the fastest of them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

CHILD = Path(__file__).with_name("arrow_workload.py")
ROWS: Dict[str, Dict[str, str]] = {
    "arrow-mimalloc": {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"},
    "arrow-jemalloc": {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"},
    "arrow-system": {"ARROW_DEFAULT_MEMORY_POOL": "system"},
    "mempool-numpy": {"MEMPOOL_INSTALL": "1"},
    "mempool": {"MEMPOOL_INSTALL": "1", "MEMPOOL_ARROW": "1"},
}
TARGET_ROW = "mempool"
FULL, QUICK = 400_000, 40_000
METRICS = ("wall_s", "cpu_s", "faults", "peak_rss", "rss_after", "peak_over_base",
           "after_over_base")


def _env(row: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMPOOL_", "ARROW_DEFAULT_MEMORY_POOL", "LD_PRELOAD"))
           or k == "MEMPOOL_ARROW_CACHE"}
    # one BLAS/OpenMP thread, as the rest of the suite; Arrow's own pool of
    # CPU threads stays at its default (it is what pandas uses)
    env.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env.update(ROWS[row])
    return env


def run_child(row: str, n: int, seed: int, rnd: int, settle_s: float = 1.5,
              timeout_s: float = 900) -> Dict[str, Any]:
    """One measured run of the workload under ``row``; its record."""
    cfg = {"row": row, "n": n, "seed": seed, "round": rnd, "settle_s": settle_s}
    proc = subprocess.run([sys.executable, str(CHILD), json.dumps(cfg)], env=_env(row),
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        return {"row": row, "round": rnd, "status": "error",
                "error": proc.stderr.strip().splitlines()[-1:] or ["?"],
                "stderr_tail": proc.stderr[-2000:]}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["status"] = "ok"
    rec["peak_over_base"] = rec["peak_rss"] - rec["baseline_rss"]
    rec["after_over_base"] = rec["rss_after"] - rec["baseline_rss"]
    return rec


def run(rows: Sequence[str], rounds: int, n: int, seed: int = 0,
        progress=None) -> List[Dict[str, Any]]:
    """Every row ``rounds`` times, interleaved (order rotated each round)."""
    records = []
    for r in range(rounds):
        order = list(rows[r % len(rows):]) + list(rows[:r % len(rows)])
        for row in order:
            rec = run_child(row, n, seed, r)
            records.append(rec)
            if progress:
                progress(rec)
    return records


def summarize(records: List[Dict[str, Any]], rows: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Median of each metric per row (successful runs only)."""
    out = {}
    for row in rows:
        ok = [r for r in records if r["row"] == row and r.get("status") == "ok"]
        if ok:
            out[row] = {m: statistics.median(r[m] for r in ok) for m in METRICS}
            out[row]["runs"] = len(ok)
    return out


def targets(summary: Dict[str, Dict[str, float]]) -> List[Dict[str, Any]]:
    """Issue 23's targets for the mempool row against the others."""
    mine = summary.get(TARGET_ROW)
    others = {k: v for k, v in summary.items() if k != TARGET_ROW}
    if mine is None or not others:
        return []
    result = []
    for metric, factor, text in (("peak_rss", 1.0, "peak RSS <= best of the others"),
                                 ("rss_after", 1.0, "RSS after <= best of the others"),
                                 ("peak_over_base", 1.0, "peak above imports <= best"),
                                 ("after_over_base", 1.0, "RSS after above imports <= best"),
                                 ("wall_s", 1.02, "time <= 1.02x the fastest")):
        best_row = min(others, key=lambda k: others[k][metric])
        best = others[best_row][metric]
        result.append({"target": text, "metric": metric, "mempool": mine[metric],
                       "best": best, "best_row": best_row,
                       "ratio": mine[metric] / best if best else float("inf"),
                       "met": mine[metric] <= best * factor})
    return result


def _fmt(metric: str, value: float) -> str:
    if metric.endswith("_s"):
        return f"{value:8.2f}"
    if metric == "faults":
        return f"{value:8.0f}"
    return f"{value / (1 << 20):8.1f}"


def table(summary: Dict[str, Dict[str, float]]) -> str:
    """The medians as text (MiB for memory), with ratios to arrow-mimalloc."""
    ref = summary.get("arrow-mimalloc")
    head = (f"{'row':16s}{'wall s':>8s}{'cpu s':>8s}{'faults':>8s}{'peak MiB':>9s}"
            f"{'after':>8s}{'peak+':>8s}{'after+':>8s}   ratios to arrow-mimalloc (wall/peak/after)")
    lines = [head]
    for row, m in summary.items():
        ratios = ("" if ref is None else
                  f"   {m['wall_s'] / ref['wall_s']:.3f} / {m['peak_rss'] / ref['peak_rss']:.3f} / "
                  f"{m['rss_after'] / ref['rss_after']:.3f}")
        lines.append(f"{row:16s}" + "".join(_fmt(k, m[k]) for k in METRICS) + ratios)
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; the exit status (1 when a run failed or digests differ)."""
    p = argparse.ArgumentParser(prog="python -m mempool bench --real --arrow",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--real", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--arrow", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help=f"{QUICK} rows instead of {FULL}")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench-output"),
                   help="folder for arrow.json (default ./bench-output)")
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    rows = [r for r in ns.rows.split(",") if r]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        print(f"unknown row(s) {bad}; choose from {list(ROWS)}", file=sys.stderr)
        return 2
    n = QUICK if ns.quick else FULL

    def progress(rec):
        if rec.get("status") != "ok":
            print(f"round {rec['round'] + 1} {rec['row']}: FAILED {rec['error']}\n"
                  f"{rec.get('stderr_tail', '')}", file=sys.stderr, flush=True)
            return
        print(f"round {rec['round'] + 1} {rec['row']:15s} ({rec['arrow_backend']}): "
              f"{rec['wall_s']:.2f} s, {rec['faults']} faults, peak "
              f"{rec['peak_rss'] / 2**20:.0f} MiB, after {rec['rss_after'] / 2**20:.0f} MiB",
              file=sys.stderr, flush=True)

    records = run(rows, ns.rounds, n, ns.seed, progress)
    summary = summarize(records, rows)
    print(table(summary))
    tg = targets(summary)
    for t in tg:
        print(f"{'MET   ' if t['met'] else 'MISSED'} {t['target']}: mempool {_fmt(t['metric'], t['mempool']).strip()}"
              f" vs {t['best_row']} {_fmt(t['metric'], t['best']).strip()} ({t['ratio']:.3f}x)")
    digests = {r["digest"] for r in records if r.get("status") == "ok"}
    ns.out.mkdir(parents=True, exist_ok=True)
    with open(ns.out / "arrow.json", "w") as f:
        json.dump({"n": n, "rounds": ns.rounds, "load": os.getloadavg(), "summary": summary,
                   "targets": tg, "digests": sorted(digests), "records": records}, f, indent=1)
    print(f"wrote {ns.out / 'arrow.json'}")
    failed = [r for r in records if r.get("status") != "ok"]
    if len(digests) > 1:
        print(f"RESULTS DIFFER between rows: {sorted(digests)}", file=sys.stderr)
    return 1 if failed or len(digests) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
