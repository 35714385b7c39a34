"""The demo's plots: one PNG per workload, from the child records.

Each figure has three parts:

* top: resident memory per step, one line per allocator (median over
  rounds).  It is the peak *within* each step (the kernel's high-water mark,
  restarted between steps: :class:`child.StepPeak`), so that the line shows
  what the table's peak RSS is the highest point of.  RSS read after a step
  misses the moment when the step's old and new arrays are both alive, and
  that moment is where an allocator that gives memory back at once (glibc)
  peaks.  For mempool, the pool's own live and resident bytes beside it.
* bottom: step time against numpy's default.  The step times of every
  allocator follow the workload's drifting sizes, so seven lines of them on
  one axis overlap into one band; divided by the default's time for the
  same step of the same round, the drift cancels and each allocator becomes
  one box (quartiles of its steps after warm-up, whiskers at 5 and 95%)
  with the table's "x default" marked on it.
* right: the legend and notes (what the RSS measures, why the pool's line
  sits above the default's, what the mempool row holds beyond the pool,
  flagged noisy rounds), outside the data so they cover none of it.
"""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import workloads as wl_mod
from .report import MB, _fmt_time, noisy_line, warmup_steps

#: One look per allocator, the same in every plot: colour and dash pattern
#: tell the rows apart where their lines overlap; mempool is drawn thickest.
STYLES: Dict[str, Tuple[str, Any, float]] = {
    "default": ("tab:blue", "-", 1.4),
    "glibc-tuned": ("tab:orange", (0, (5, 2)), 1.4),
    "mempool": ("tab:green", "-", 2.6),
    "jemalloc": ("tab:red", (0, (6, 2, 1, 2)), 1.4),
    "mimalloc": ("tab:purple", (0, (1, 1.5)), 1.8),
    "tcmalloc": ("tab:brown", (0, (8, 2, 1, 2, 1, 2)), 1.4),
    "floor": ("tab:gray", (0, (3, 1)), 1.4),
}
_OTHER_STYLE = ("black", "-", 1.0)
#: Where the time panel's (log) ratio axis may put labelled ticks.
RATIO_TICKS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0)
#: The same for a range wider than 12x, where those would crowd.
RATIO_TICKS_WIDE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: Characters per line of the notes beside the plots.
NOTE_WIDTH = 52


def ratio_label(x: float, _pos: Any = None) -> str:
    """Tick text of a ratio axis: ``0.75x``, ``1x`` (never 10^k notation)."""
    return f"{x:.2f}".rstrip("0").rstrip(".") + "x"


def _ok(records: Sequence[Dict[str, Any]], wl: str, alloc: str) -> List[Dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok" and r["workload_name"] == wl
            and r["allocator"] == alloc]


def _per_step_median(records: Sequence[Dict[str, Any]], key: str,
                     scale: float) -> List[float]:
    series = [r[key] for r in records if r.get(key)]
    if not series:
        return []
    n = min(len(s) for s in series)
    return [statistics.median(s[i] for s in series) / scale for i in range(n)]


def rss_series(rs: Sequence[Dict[str, Any]]) -> Tuple[List[float], str]:
    """Per-step RSS in MB, median over rounds, and the record key it came
    from: the peak within each step where every round measured it
    (``step_peak_rss``), else the RSS read after each step (``step_rss``)."""
    key = "step_peak_rss" if rs and all(r.get("step_peak_rss") for r in rs) else "step_rss"
    return _per_step_median(rs, key, MB), key


def step_ratios(records: Sequence[Dict[str, Any]], wl: str, alloc: str) -> List[float]:
    """Each step's time over numpy default's time for the same step of the
    same round, the warm-up left out, all rounds together."""
    base = {r["round"]: r for r in _ok(records, wl, "default")}
    out: List[float] = []
    for r in _ok(records, wl, alloc):
        b = base.get(r["round"])
        if b is None:
            continue
        n = min(len(r["step_ns"]), len(b["step_ns"]))
        w = warmup_steps(wl, n)
        out += [t / d for t, d in zip(r["step_ns"][w:n], b["step_ns"][w:n]) if d > 0]
    return out


def cache_note(series: Dict[str, List[float]], rows: Dict[str, Any]) -> Optional[str]:
    """Why the pool's RSS line runs above the default's, when it does in
    most steps: it keeps freed memory for reuse where glibc returns it (and
    faults it back in), which the table's peak and faults weigh up."""
    mp, dflt = series.get("mempool"), series.get("default")
    mrow, drow = rows.get("mempool"), rows.get("default")
    if not mp or not dflt or not mrow or not drow:
        return None
    if not drow["faults_per_step"] > max(1.0, 2 * mrow["faults_per_step"]):
        return None  # not the cache's doing (e.g. the import baselines differ)
    n = min(len(mp), len(dflt))
    above = sum(a > b for a, b in zip(mp[:n], dflt[:n]))
    if above <= n / 2:
        return None
    return (f"mempool's RSS is above the default's in {above} of {n} steps: the pool "
            f"keeps freed blocks resident for the next steps until its decay, where "
            f"glibc gives them back and faults them in again "
            f"({_faults(drow['faults_per_step'])} page faults a step against "
            f"{_faults(mrow['faults_per_step'])}). Peak RSS over the run: default "
            f"{drow['peak_rss'] / MB:.1f} MB, mempool {mrow['peak_rss'] / MB:.1f} MB.")


def _faults(n: float) -> str:
    return f"{n:,.0f}" if n >= 100 else f"{n:.1f}"


def gap_note(records: Sequence[Dict[str, Any]], wl: str) -> Optional[str]:
    """What the mempool row's RSS holds beyond baseline + pool resident at
    the end of the loop, by kind of mapping (the round with the median gap,
    so that the parts add up to the whole)."""
    rs = [r for r in _ok(records, wl, "mempool") if r.get("baseline_map")
          and r.get("end_of_loop_map") and "pool_end_of_loop" in r]
    if not rs:
        return None

    def gap(r: Dict[str, Any]) -> int:
        return (r["rss_end_of_loop"] - r["baseline_rss"]
                - r["pool_end_of_loop"]["resident_bytes"])

    r = sorted(rs, key=gap)[len(rs) // 2]
    before, after = r["baseline_map"], r["end_of_loop_map"]
    grew = {k: (after[k] - before[k]) / MB for k in before}
    outside = grew["anon"] + grew["other"] - r["pool_end_of_loop"]["resident_bytes"] / MB
    return (f"mempool's RSS at loop end is {gap(r) / MB:.1f} MB above baseline + pool "
            f"resident: anonymous memory outside the pool {outside:+.1f} MB (other "
            f"libraries' buffers, e.g. OpenBLAS's one per thread; Python's objects; "
            f"stacks), library code and data first used in the loop "
            f"{grew['file']:+.1f} MB, malloc's heap {grew['heap']:+.1f} MB.")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def figure(wl: str, records: Sequence[Dict[str, Any]], allocators: Sequence[str],
           rows: Dict[str, Any]) -> Any:
    """The matplotlib Figure of one workload (``rows``: the summary's rows of
    the workload, for the table's figures and noisy rounds)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    plt = _pyplot()
    unit = wl_mod.WORKLOADS[wl][0].time_unit
    per = "op" if unit == "ns" else "step"
    fig = plt.figure(figsize=(14, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(3, 1.05), height_ratios=(1.15, 1))
    ax_rss, ax_t = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    side = fig.add_subplot(grid[:, 1])
    side.axis("off")

    series: Dict[str, List[float]] = {}
    kind = "step_rss"
    for alloc in allocators:
        rs = _ok(records, wl, alloc)
        if not rs:
            continue
        color, dash, width = STYLES.get(alloc, _OTHER_STYLE)
        series[alloc], kind = rss_series(rs)
        ax_rss.plot(series[alloc], color=color, linestyle=dash, linewidth=width, label=alloc)
        if alloc == "mempool" and rs[0].get("pool_steps"):
            base = statistics.median(r["baseline_rss"] for r in rs) / MB
            steps = rs[0]["pool_steps"]
            ax_rss.plot([base + s.get("live_bytes", 0) / MB for s in steps], color="black",
                        linestyle=(0, (4, 3)), linewidth=0.9,
                        label="mempool: baseline + pool live (after the step)")
            ax_rss.plot([base + s.get("resident_bytes", 0) / MB for s in steps],
                        color="black", linestyle=(0, (1, 2)), linewidth=0.9,
                        label="mempool: baseline + pool resident (after the step)")
    ax_rss.set_ylabel("peak RSS within the step (MB)" if kind == "step_peak_rss"
                      else "RSS after the step (MB)")
    ax_rss.set_xlabel("step")
    ax_rss.set_title(f"{wl}: resident memory per step (median over rounds)")
    ax_rss.grid(alpha=0.3)

    names = [a for a in allocators if a != "default" and step_ratios(records, wl, a)]
    if names:
        box = ax_t.boxplot([step_ratios(records, wl, a) for a in names],
                           orientation="horizontal", whis=(5, 95), showfliers=False,
                           patch_artist=True, widths=0.6,
                           medianprops={"color": "black", "linewidth": 1.2})
        for patch, alloc in zip(box["boxes"], names):
            patch.set_facecolor(STYLES.get(alloc, _OTHER_STYLE)[0])
            patch.set_alpha(0.5)
        for i, alloc in enumerate(names, start=1):
            ratio = (rows.get(alloc) or {}).get("ratio_to_default")
            if ratio is not None:
                ax_t.plot([ratio], [i], marker="D", color="black", markersize=5,
                          linestyle="none")
        ax_t.axvline(1.0, color=STYLES["default"][0], linewidth=1.4)
        ax_t.set_xscale("log")  # ratios: 0.5x and 2x equally far from 1x
        lo, hi = ax_t.get_xlim()
        ax_t.xaxis.set_major_locator(FixedLocator(
            RATIO_TICKS if hi / lo <= 12 else RATIO_TICKS_WIDE))
        ax_t.xaxis.set_minor_formatter(NullFormatter())
        ax_t.set_yticks(range(1, len(names) + 1), labels=[
            tick_label(a, rows.get(a) or {}, unit) for a in names])
        ax_t.invert_yaxis()  # the legend's order, top down
        ax_t.xaxis.set_major_formatter(FuncFormatter(ratio_label))
        ax_t.set_xlabel(f"time per {per} / numpy default's time for the same step and "
                        f"round (blue line: equal; log scale)")
        ax_t.grid(alpha=0.3, axis="x")
    else:
        ax_t.text(0.5, 0.5, "only numpy's default ran: nothing to compare with it",
                  ha="center", va="center", transform=ax_t.transAxes)
        ax_t.set_axis_off()
    ax_t.set_title(f"{wl}: time per {per}, relative to numpy's default")

    handles, labels = ax_rss.get_legend_handles_labels()
    side.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, 1.0), fontsize=9,
                frameon=False)
    side.text(0.0, 0.0, "\n\n".join(textwrap.fill(n, NOTE_WIDTH)
                                   for n in notes(wl, records, series, rows, kind)),
              ha="left", va="bottom", fontsize=8, transform=side.transAxes)
    return fig


def tick_label(alloc: str, row: Dict[str, Any], unit: str) -> str:
    """An allocator's label on the time panel: its name (``*``: a noisy
    round), its median time and the table's ratio."""
    flag = " *" if row.get("noisy_rounds") else ""
    if row.get("step_ns_per_op") is None:
        return alloc + flag
    ratio = row.get("ratio_to_default")
    return (f"{alloc}{flag}\n{_fmt_time(row['step_ns_per_op'], unit)}"
            + ("" if ratio is None else f", {ratio:.2f}x"))


def notes(wl: str, records: Sequence[Dict[str, Any]], series: Dict[str, List[float]],
          rows: Dict[str, Any], kind: str) -> List[str]:
    """The notes beside a workload's plots, in the order shown."""
    out = ["Top: the peak RSS within each step (the kernel's high-water mark, restarted "
           "between steps); the table's peak RSS is the highest of them."
           if kind == "step_peak_rss" else
           "Top: RSS read after each step (this kernel cannot restart the high-water "
           "mark): it misses the peaks inside the steps that the table's peak RSS counts."]
    if any(a != "default" for a in series):
        out.append("Bottom: a box per allocator holds its steps after warm-up (quartiles; "
                   "whiskers 5-95%), ◆ the table's \"x default\" (the median over rounds "
                   "of the rounds' median ratios).")
    noisy = noisy_line(rows, wl_mod.WORKLOADS[wl][0].time_unit)
    out += [n for n in (cache_note(series, rows), gap_note(records, wl),
                        noisy and "* " + noisy + ".") if n]
    return out


def plot(records: Sequence[Dict[str, Any]], workloads: Sequence[str],
         allocators: Sequence[str], out_dir: Path,
         summary: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Write ``WORKLOAD.png`` for every workload into ``out_dir``; the paths."""
    plt = _pyplot()
    paths: List[Path] = []
    for wl in workloads:
        fig = figure(wl, records, allocators, (summary or {}).get(wl, {}))
        path = out_dir / f"{wl}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
