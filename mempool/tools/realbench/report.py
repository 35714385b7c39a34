"""Figures, tables, targets, plot and JSON of the real-library suite.

Definitions (also written into the JSON):

* wall / CPU: the workload's wall time and process CPU time (all threads,
  user + system), imports excluded; the figure shown is the median over rounds.
* x default, x fastest other: the median over rounds of the ratio to numpy's
  default allocator, and to the fastest other allocator (the one, mempool
  excluded, with the least median time), *in the same round* (the
  interleaving makes a same-round ratio robust to machine noise that
  absolute times are not; a ratio to each round's fastest of several noisy
  rows would be biased against the row compared).
* faults: minor + major page faults during the work (getrusage), median.
* peak RSS: the kernel's high-water mark of the whole process (ru_maxrss,
  interpreter and libraries included); "over base": minus the RSS measured
  after the imports, just before the work.
* RSS after: the process's RSS once the work's outputs are dropped and the
  child has been idle for a second (and the pool's decay period); trim() is
  never called.
* targets, for the mempool row: time <= 1.02x the fastest other allocator;
  page faults <= 1.1x the fewest of the others; peak RSS over the base <=
  numpy default's; RSS after <= every other allocator's.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

MB = 1 << 20
POOL = "mempool"
DEFINITIONS = __doc__
TIME_TARGET, FAULT_TARGET = 1.02, 1.1


def _median(xs: Sequence[Optional[float]]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def check_digests(records: List[Dict[str, Any]]) -> List[str]:
    """Messages for workloads whose results differ between runs (empty: all equal)."""
    seen: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("status") == "ok":
            seen[r["workload_name"]][r["digest"]].append(f"{r['allocator']}/r{r['round']}")
    return [f"{wl}: results differ between runs: " +
            "; ".join(f"{d} from {', '.join(who)}" for d, who in by.items())
            for wl, by in seen.items() if len(by) > 1]


def summarize(records: List[Dict[str, Any]], workloads: Sequence[str],
              allocators: Sequence[str]) -> Dict[str, Any]:
    """Per workload and allocator: medians over rounds and same-round ratios."""
    by: Dict[str, Dict[str, Dict[int, Dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    errors = []
    for r in records:
        if r.get("status") == "ok":
            by[r["workload_name"]][r["allocator"]][r["round"]] = r
        else:
            errors.append({k: r.get(k) for k in ("workload_name", "allocator", "round",
                                                  "error", "stderr_tail")})
    out: Dict[str, Any] = {}
    for wl in workloads:
        rows = by.get(wl, {})
        rounds = sorted({k for runs in rows.values() for k in runs})
        table = {}
        for name in allocators:
            runs = rows.get(name)
            if not runs:
                continue
            med = {k: _median([run[k] for run in runs.values()])
                   for k in ("wall_s", "cpu_s", "faults", "peak_rss",
                             "peak_rss_over_baseline", "rss_after", "baseline_rss")}

            def same_round(key: str, ref_names: Sequence[str]) -> Optional[float]:
                ratios = []
                for k in rounds:
                    refs = [rows[o][k][key] for o in ref_names
                            if o in rows and k in rows[o]]
                    if k in runs and refs and min(refs) > 0:
                        ratios.append(runs[k][key] / min(refs))
                return _median(ratios)

            others = [o for o in allocators if o not in (name, POOL) and o in rows]
            fastest = {key: min(others, key=lambda o: rows_med(rows, o, key), default=None)
                       for key in ("wall_s", "cpu_s")}
            med.update(
                wall_x_default=same_round("wall_s", ["default"]),
                cpu_x_default=same_round("cpu_s", ["default"]),
                wall_x_fastest_other=same_round("wall_s", [fastest["wall_s"]]),
                cpu_x_fastest_other=same_round("cpu_s", [fastest["cpu_s"]]),
                fastest_other_wall=fastest["wall_s"], fastest_other_cpu=fastest["cpu_s"],
                peak_x_default=(med["peak_rss"] / rows_med(rows, "default", "peak_rss")
                                if "default" in rows else None),
                rounds=len(runs),
                pool_at_end=(_median_pool(runs) if name == POOL else None))
            table[name] = med
        out[wl] = table
    return {"workloads": out, "errors": errors}


def rows_med(rows, name: str, key: str) -> float:
    """Median of ``key`` over the rounds of allocator ``name``."""
    return _median([run[key] for run in rows[name].values()])


def _median_pool(runs: Dict[int, Dict[str, Any]]) -> Dict[str, float]:
    keys = ("peak_live_bytes", "peak_resident_bytes", "slab_free_bytes",
            "thread_cache_count", "free_bytes", "dirty_free_bytes", "released_bytes",
            "mmap_count", "munmap_count", "madvise_count")
    return {k: _median([run.get("pool_at_end", {}).get(k) for run in runs.values()])
            for k in keys}


def evaluate_targets(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The issue's three targets for the mempool row of every workload."""
    out = []
    for wl, table in summary["workloads"].items():
        pool = table.get(POOL)
        if pool is None:
            continue
        others_after = {n: r["rss_after"] for n, r in table.items() if n != POOL}
        t = pool["wall_x_fastest_other"]
        c = pool["cpu_x_fastest_other"]
        p = pool["peak_x_default"]
        least_other = min(others_after.values()) if others_after else None
        fewest = min((r["faults"] for n, r in table.items() if n != POOL), default=None)
        f = pool["faults"] / fewest if fewest else None
        base = table.get("default", {}).get("peak_rss_over_baseline")
        over = pool["peak_rss_over_baseline"]
        out.append({
            "workload": wl,
            "time_x_fastest_other": t,
            "time_met": None if t is None else t <= TIME_TARGET,
            "cpu_x_fastest_other": c,
            "cpu_met": None if c is None else c <= TIME_TARGET,
            "peak_x_default": p,
            "faults_x_fewest_other": f,
            "faults_met": None if f is None else f <= FAULT_TARGET,
            "peak_over_base_mb": over / MB,
            "default_over_base_mb": None if base is None else base / MB,
            "peak_met": None if base is None else over <= base,
            "rss_after_mb": pool["rss_after"] / MB,
            "least_other_after_mb": None if least_other is None else least_other / MB,
            "after_met": None if least_other is None else pool["rss_after"] <= least_other,
        })
    return out


def _fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _met(flag: Optional[bool]) -> str:
    return "-" if flag is None else ("met" if flag else "MISSED")


def table_rows(summary: Dict[str, Any]) -> List[List[str]]:
    """The main table's cells, one row per (workload, allocator)."""
    rows = []
    for wl, table in summary["workloads"].items():
        for name, r in table.items():
            rows.append([wl, name, _fmt(r["wall_s"], ".2f"), _fmt(r["wall_x_default"], ".2f"),
                         _fmt(r["wall_x_fastest_other"], ".2f"), _fmt(r["cpu_x_default"], ".2f"),
                         _fmt(r["faults"], ".0f"), _fmt(r["peak_rss"] / MB, ".1f"),
                         _fmt(r["peak_x_default"], ".3f"),
                         _fmt(r["peak_rss_over_baseline"] / MB, ".1f"),
                         _fmt(r["rss_after"] / MB, ".1f")])
    return rows


HEADERS = ["workload", "allocator", "wall s", "x default", "x fastest other", "CPU x def",
           "faults", "peak RSS MiB", "peak x def", "peak over base MiB", "RSS after MiB"]
TARGET_HEADERS = ["workload", "time x fastest other", "", "CPU x fastest other", "",
                  "faults x fewest other", "", "peak over base MiB (default)", "",
                  "RSS after MiB (least other)", ""]


def target_rows(targets: List[Dict[str, Any]]) -> List[List[str]]:
    """The targets table's cells."""
    return [[t["workload"], _fmt(t["time_x_fastest_other"], ".3f"), _met(t["time_met"]),
             _fmt(t["cpu_x_fastest_other"], ".3f"), _met(t["cpu_met"]),
             _fmt(t["faults_x_fewest_other"], ".2f"), _met(t["faults_met"]),
             f"{t['peak_over_base_mb']:.1f} ({_fmt(t['default_over_base_mb'], '.1f')})",
             _met(t["peak_met"]),
             f"{t['rss_after_mb']:.1f} ({_fmt(t['least_other_after_mb'], '.1f')})",
             _met(t["after_met"])] for t in targets]


def render(console, summary: Dict[str, Any], targets: List[Dict[str, Any]]) -> None:
    """Print the suite's table and the targets table (rich)."""
    from rich.table import Table
    table = Table(title="real-library suite (medians over rounds)")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("workload", "allocator") else "right")
    last = None
    for row in table_rows(summary):
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*row, style="bold" if row[1] == POOL else None)
    console.print(table)
    tt = Table(title="targets for mempool")
    for h in TARGET_HEADERS:
        tt.add_column(h)
    for row in target_rows(targets):
        tt.add_row(*row)
    console.print(tt)
    met = {k: sum(1 for t in targets if t[k])
           for k in ("time_met", "cpu_met", "faults_met", "peak_met", "after_met")}
    console.print(f"met on {len(targets)} workloads: time {met['time_met']} (CPU {met['cpu_met']}), "
                  f"faults {met['faults_met']}, peak over base {met['peak_met']}, "
                  f"RSS after {met['after_met']}")


def markdown(headers: List[str], rows: List[List[str]]) -> str:
    """A Markdown table (for the README)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot(summary: Dict[str, Any], path: Path) -> Path:
    """Three panels: wall time and peak RSS as ratios to numpy's default, and
    RSS after the work, per workload and allocator (a PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    wls = list(summary["workloads"])
    names = sorted({n for t in summary["workloads"].values() for n in t},
                   key=lambda n: ("default", "glibc-tuned", POOL, "jemalloc", "mimalloc",
                                  "tcmalloc").index(n) if n in ("default", "glibc-tuned", POOL,
                                  "jemalloc", "mimalloc", "tcmalloc") else 99)
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 1.1 * len(wls) + 3), 10), sharex=True)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(wls))
    panels = (("wall_x_default", "wall time / numpy default", 1.0),
              ("peak_x_default", "peak RSS / numpy default", 1.0),
              ("rss_after", "RSS after the work (MiB)", None))
    for ax, (key, label, ref) in zip(axes, panels):
        for i, name in enumerate(names):
            vals = []
            for wl in wls:
                v = summary["workloads"][wl].get(name, {}).get(key)
                vals.append(np.nan if v is None else (v / MB if key == "rss_after" else v))
            ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=name,
                   edgecolor="black" if name == POOL else None, linewidth=1.2)
        if ref is not None:
            ax.axhline(ref, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(label)
        if key != "rss_after":
            lo = np.nanmin([summary["workloads"][w].get(n, {}).get(key) or np.nan
                            for w in wls for n in names])
            ax.set_ylim(bottom=max(0.0, min(0.8, lo - 0.05)))
    axes[0].legend(ncol=len(names), fontsize=8, loc="upper left")
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(wls, rotation=30, ha="right")
    fig.suptitle("mempool real-library suite (medians over rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Write the run's JSON (atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)
