"""Turn the demo's child records into figures, tables, plots and JSON.

Definitions used throughout (also written into the JSON's ``definitions``):

* step time: wall time (perf_counter), median over the steps after warm-up,
  per round; the figure shown is the median over rounds.  "x default" is the
  median over rounds of the ratio to numpy's default allocator *in the same
  round* (interleaving makes the ratio robust to machine noise that the
  absolute times are not).  "CPU x def" is the same ratio for the process's
  CPU time per step (all threads, user + system), which other processes
  competing for the cores disturb far less than wall time.
* faults/step: mean minor page faults per step after warm-up (a mean, not a
  median, so that a fault storm every few steps is not hidden).
* peak RSS: the kernel's high-water mark (ru_maxrss) at the end of the loop.
* peak live: the pool's ``peak_live_bytes`` from the mempool row of the same
  run (the workloads are deterministic, so every row has the same live set);
  without a mempool row, the workload's analytic estimate.
* RSS/live: (peak RSS - import baseline) / peak live.
* floor: not an allocator but the reference row: numpy's default allocator
  running the workload's floor variant, the same arithmetic bit for bit into
  arrays allocated and touched once before the loop.  Its time is what a
  perfect allocator would give; its memory figures hold every array at the
  largest size for the whole run, so only its time is compared.
* after free: RSS once everything is dropped and the child has slept through
  the pool's decay period (trim() is never called), and its excess over the
  import baseline.
* noisy round: a round whose median step time is more than 1.5x, or less
  than 1/1.5 of, the median of the same allocator's per-round medians (this
  round included; of two rounds, each is compared with the other, so both
  are flagged when 1.5x apart).  Normal noise on a shared machine is up to
  ~30%, so 1.5x marks a disturbed round (another process, a frequency drop),
  not an allocator effect.  Flagged rounds are listed under the table and in
  the row's ``noisy_rounds`` (``round``: the 0-based index of the records;
  ``reference_ns``: what the round was compared with).  They stay in the
  medians, which one outlier among three rounds does not move.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rich.console import Console
from rich.table import Table

from . import workloads as wl_mod

MB = 1e6
#: A round is flagged noisy when its median step is off the median of the
#: allocator's rounds by more than this factor, either way (see DEFINITIONS).
NOISY_FACTOR = 1.5
PEER_NAMES = ("glibc-tuned", "jemalloc", "mimalloc", "tcmalloc")
DEFINITIONS = __doc__


def _median(xs: Sequence[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def warmup_steps(workload: str, steps: int) -> int:
    """Warm-up steps excluded from steady-state figures (at most a quarter)."""
    return min(wl_mod.WORKLOADS[workload][3], steps // 4)


def noisy_rounds(per_round: Dict[Any, float],
                 factor: float = NOISY_FACTOR) -> List[Dict[str, Any]]:
    """The rounds of one allocator whose median step time is off the median of
    its rounds by more than ``factor`` either way (none with fewer than two)."""
    times = {int(r): t for r, t in per_round.items() if t}
    if len(times) < 2:
        return []
    out = []
    for r, t in sorted(times.items()):
        # Two rounds: each against the other (their median would be the mean).
        ref = (statistics.median(times.values()) if len(times) > 2
               else next(v for k, v in times.items() if k != r))
        if not 1 / factor <= t / ref <= factor:
            out.append({"round": r, "step_ns_per_op": t, "reference_ns": ref,
                        "ratio": t / ref})
    return out


def _round_figures(rec: Dict[str, Any]) -> Dict[str, Any]:
    """Steady-state figures of one child record."""
    steps = len(rec["step_ns"])
    w = warmup_steps(rec["workload_name"], steps)
    ns = rec["step_ns"][w:]
    ops = rec.get("ops_per_step", 1)
    fig = {
        "step_ns_per_op": statistics.median(ns) / ops,
        "cpu_ns_per_op": (statistics.median(rec["step_cpu_ns"][w:]) / ops
                          if rec.get("step_cpu_ns") else None),
        "faults_per_step": statistics.fmean(rec["step_faults"][w:]),
        "faults_per_op": statistics.fmean(rec["step_faults"][w:]) / ops,
        "loop_stime_s": rec["loop_stime_s"],
        "baseline_rss": rec["baseline_rss"],
        "peak_rss": rec["peak_rss"],
        "rss_after_free": rec["rss_after_free"],
        "rss_after_free_now": rec["rss_after_free_now"],
        "digest": rec["digest"],
        "live_estimate_bytes": rec.get("live_estimate_bytes", 0),
    }
    if "pool_end_of_loop" in rec:
        end, after = rec["pool_end_of_loop"], rec.get("pool_after_free", {})
        fig["pool"] = {
            "peak_live_bytes": end.get("peak_live_bytes"),
            "peak_resident_bytes": end.get("peak_resident_bytes"),
            "reserved_bytes": end.get("reserved_bytes"),
            "fragmentation": end.get("fragmentation"),
            "max_fragmentation": max((s.get("fragmentation") or 0)
                                     for s in rec.get("pool_steps") or [end]),
            "largest_free_bytes": end.get("largest_free_bytes"),
            "free_bytes": end.get("free_bytes"),
            "resident_after_free": after.get("resident_bytes"),
            "released_bytes": after.get("released_bytes"),
            "mmap_count": after.get("mmap_count"),
            "munmap_count": after.get("munmap_count"),
            "madvise_count": after.get("madvise_count"),
            "mremap_count": after.get("mremap_count"),
        }
    if rec.get("size_table_ns"):
        fig["size_table_ns"] = rec["size_table_ns"]
    return fig


def summarize(records: List[Dict[str, Any]], workloads: Sequence[str],
              allocators: Sequence[str]) -> Dict[str, Any]:
    """Aggregate child records into per-(workload, allocator) figures."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    summary: Dict[str, Any] = {}
    consistency: Dict[str, Any] = {}
    for wl in workloads:
        per_alloc: Dict[str, List[Dict[str, Any]]] = {}
        for r in ok:
            if r["workload_name"] == wl:
                per_alloc.setdefault(r["allocator"], []).append(r)
        rounds = {a: {r["round"]: _round_figures(r) for r in rs}
                  for a, rs in per_alloc.items()}
        base = rounds.get("default", {})
        pool_rounds = [f["pool"]["peak_live_bytes"] for f in rounds.get("mempool", {}).values()
                       if f.get("pool") and f["pool"].get("peak_live_bytes")]
        est = [f["live_estimate_bytes"] for fs in rounds.values() for f in fs.values()]
        peak_live = _median(pool_rounds) if pool_rounds else _median(est)
        live_source = "pool" if pool_rounds else "estimate"
        rows: Dict[str, Any] = {}
        for a in allocators:
            if a not in rounds:
                continue
            figs = list(rounds[a].values())
            ratios = [f["step_ns_per_op"] / base[rnd]["step_ns_per_op"]
                      for rnd, f in rounds[a].items() if rnd in base]
            cpu_ratios = [f["cpu_ns_per_op"] / base[rnd]["cpu_ns_per_op"]
                          for rnd, f in rounds[a].items()
                          if rnd in base and f["cpu_ns_per_op"] and base[rnd]["cpu_ns_per_op"]]
            row = {k: _median([f[k] for f in figs]) for k in (
                "step_ns_per_op", "cpu_ns_per_op", "faults_per_step", "faults_per_op",
                "loop_stime_s", "baseline_rss", "peak_rss", "rss_after_free",
                "rss_after_free_now")}
            row["rounds"] = len(figs)
            row["ratio_to_default"] = _median(ratios)
            # Kept so any two rows can be compared round by round (see targets).
            row["step_ns_per_round"] = {str(rnd): f["step_ns_per_op"]
                                        for rnd, f in rounds[a].items()}
            row["noisy_rounds"] = noisy_rounds(row["step_ns_per_round"])
            row["cpu_ratio_to_default"] = _median(cpu_ratios)
            tables = {rnd: f["size_table_ns"] for rnd, f in rounds[a].items()
                      if f.get("size_table_ns")}
            if tables:
                # per size: median ns, and the median same-round ratio to default
                row["size_table"] = {
                    n: {"ns": _median([t[n] for t in tables.values()]),
                        "ratio_to_default": _median(
                            [t[n] / base[rnd]["size_table_ns"][n] for rnd, t in tables.items()
                             if rnd in base and base[rnd].get("size_table_ns", {}).get(n)])}
                    for n in next(iter(tables.values()))}
            row["peak_live_bytes"] = peak_live
            row["peak_live_source"] = live_source
            row["rss_over_live"] = ((row["peak_rss"] - row["baseline_rss"]) / peak_live
                                    if peak_live else None)
            row["after_free_over_baseline"] = row["rss_after_free"] - row["baseline_rss"]
            pools = [f["pool"] for f in figs if "pool" in f]
            if pools:
                row["pool"] = {k: _median([p[k] for p in pools if p.get(k) is not None])
                               for k in pools[0]}
            rows[a] = row
        summary[wl] = rows
        digests = {a: sorted({f["digest"] for f in rounds[a].values()}) for a in rounds}
        distinct = {d for ds in digests.values() for d in ds}
        consistency[wl] = {"identical": len(distinct) <= 1, "digests": digests}
    return {"summary": summary, "consistency": consistency,
            "failed": [{k: r.get(k) for k in ("allocator", "workload_name", "round",
                                                "error", "returncode", "stderr_tail",
                                                "traceback")} for r in failed]}


def same_round_ratio(row: Dict[str, Any], other: Dict[str, Any]) -> Optional[float]:
    """Median over the rounds both rows ran of row's step time / other's."""
    a, b = row.get("step_ns_per_round", {}), other.get("step_ns_per_round", {})
    return _median([a[r] / b[r] for r in a if r in b and b[r]])


def evaluate_targets(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Check the mempool row against the project's performance targets (README)."""
    out: List[Dict[str, Any]] = []

    def add(workload: str, what: str, target: str, value, passed) -> None:
        out.append({"workload": workload, "target": what, "threshold": target,
                    "value": value, "pass": passed})

    for wl, rows in summary.items():
        mp, dflt = rows.get("mempool"), rows.get("default")
        if not mp:
            continue
        if wl == "mlp":
            add(wl, "median step vs default", "<= 0.55x", mp["ratio_to_default"],
                mp["ratio_to_default"] is not None and mp["ratio_to_default"] <= 0.55)
            for peer in PEER_NAMES:
                if peer in rows:
                    # Same-round ratio, like "x default": robust to load drifting
                    # between rounds, which absolute medians are not.
                    ratio = same_round_ratio(mp, rows[peer])
                    add(wl, f"faster than {peer} (same-round ratio)", "< 1.00x", ratio,
                        ratio is not None and ratio < 1.0)
            add(wl, "page faults / step", "< 10", mp["faults_per_step"],
                mp["faults_per_step"] < 10)
        elif wl == "temporaries":
            add(wl, "time / iteration vs default", "~0.6x (<= 0.65)",
                mp["ratio_to_default"],
                mp["ratio_to_default"] is not None and mp["ratio_to_default"] <= 0.65)
            add(wl, "page faults / iteration", "~0 (< 5)", mp["faults_per_step"],
                mp["faults_per_step"] < 5)
        elif wl == "small":
            add(wl, "ns / op vs default", "no slower (<= 1.05x, noise)",
                mp["ratio_to_default"],
                mp["ratio_to_default"] is not None and mp["ratio_to_default"] <= 1.05)
            for n, cell in (mp.get("size_table") or {}).items():
                r = cell["ratio_to_default"]
                add(wl, f"np.empty {n} B + drop vs default (same round)", "<= 0.95x", r,
                    r is not None and r <= 0.95)
        if "floor" in rows:
            # The target "within 5% of the pre-touched floor", same round.
            ratio = same_round_ratio(mp, rows["floor"])
            add(wl, "time vs floor (pre-allocated, same round)", "<= 1.05x", ratio,
                ratio is not None and ratio <= 1.05)
        if wl in ("mlp", "temporaries") and dflt:
            add(wl, "peak RSS vs default (glibc)", f"<= {dflt['peak_rss'] / MB:.1f} MB",
                mp["peak_rss"] / MB, mp["peak_rss"] <= dflt["peak_rss"])
        add(wl, "RSS after freeing - import baseline", "<= 5 MB",
            mp["after_free_over_baseline"] / MB, mp["after_free_over_baseline"] <= 5 * MB)
        held = (mp.get("pool") or {}).get("resident_after_free")
        if held is not None:
            # The row above also counts memory no allocator controls (OpenBLAS
            # GEMM buffers, code pages first touched by the loop); this one is
            # what the pool itself still holds.
            add(wl, "pool's own resident after freeing", "<= 5 MB", held / MB, held <= 5 * MB)
    return out


def _fmt_time(ns: Optional[float], unit: str) -> str:
    if ns is None:
        return "-"
    return f"{ns:.0f} ns" if unit == "ns" else f"{ns / 1e6:.2f} ms"


def noisy_line(rows: Dict[str, Any], unit: str) -> Optional[str]:
    """A workload's flagged noisy rounds in one sentence (1-based round
    numbers), for the table and the plot; None when no round is flagged."""
    parts = []
    for alloc, row in rows.items():
        flags = row.get("noisy_rounds") or []
        if flags:
            parts.append(f"{alloc} round{'s' if len(flags) > 1 else ''} " + ", ".join(
                f"{f['round'] + 1} ({_fmt_time(f['step_ns_per_op'], unit)}, "
                f"{f['ratio']:.2f}x)" for f in flags))
    if not parts:
        return None
    return (f"noisy rounds (median step > {NOISY_FACTOR}x or < 1/{NOISY_FACTOR} the median of "
            "the allocator's rounds, or of two rounds the other; kept in the medians): "
            + "; ".join(parts))


def _fmt_mb(b: Optional[float]) -> str:
    return "-" if b is None else f"{b / MB:.1f}"


def _fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _render_size_table(console: Console, wl: str, rows: Dict[str, Any],
                       allocators: Sequence[Any]) -> None:
    """The per-size table (small workload): ns per op and same-round ratio
    to numpy's default for every allocator that measured one."""
    names = [a.name for a in allocators if (rows.get(a.name) or {}).get("size_table")]
    if not names:
        return
    t = Table(title=f"{wl}: np.empty(n // 8) + drop, per size (median ns, x default "
                    "same round)", title_justify="left", header_style="bold")
    t.add_column("bytes", justify="right")
    for name in names:
        t.add_column(name, justify="right")
    for n in rows[names[0]]["size_table"]:
        cells = []
        for name in names:
            cell = rows[name]["size_table"].get(n) or {}
            r = cell.get("ratio_to_default")
            cells.append(f"{_fmt(cell.get('ns'), '.0f')} ns"
                         + ("" if name == "default" or r is None else f" {r:.2f}x"))
        t.add_row(n, *cells)
    console.print(t)


def render(console: Console, result: Dict[str, Any], allocators: Sequence[Any]) -> None:
    """Print the results tables, consistency checks and target checks."""
    summary, consistency = result["summary"], result["consistency"]
    for wl, rows in summary.items():
        unit = wl_mod.WORKLOADS[wl][0].time_unit
        per = "op" if unit == "ns" else "step"
        t = Table(title=f"{wl}: {wl_mod.WORKLOADS[wl][0].description}",
                  title_justify="left", header_style="bold")
        for col in ("allocator", f"median/{per}", "x default", "CPU x def", f"faults/{per}",
                    "sys s", "peak RSS MB", "RSS/live", "after free MB", "Δ base MB"):
            t.add_column(col, justify="left" if col == "allocator" else "right")
        skipped = []
        for alloc in allocators:
            row = rows.get(alloc.name)
            if not alloc.runs(wl):
                continue
            if not alloc.available:
                skipped.append(f"{alloc.name} ({alloc.reason})")
                continue
            if row is None:
                t.add_row(alloc.name, "[red]failed[/]", *[""] * 8)
                continue
            faults = row["faults_per_op"] if per == "op" else row["faults_per_step"]
            ratio = row["ratio_to_default"]
            style = "green" if ratio is not None and ratio < 0.95 else (
                "red" if ratio is not None and ratio > 1.05 else "")
            ratio_txt = _fmt(ratio, ".2f") + "x"
            meaningful = (row["peak_live_bytes"] or 0) >= MB  # tiny live sets: no ratio
            flagged = row.get("noisy_rounds") or []
            t.add_row(
                f"[bold]{alloc.name}[/]" if alloc.name == "mempool" else alloc.name,
                _fmt_time(row["step_ns_per_op"], unit) + (" [yellow]*[/]" if flagged else ""),
                f"[{style}]{ratio_txt}[/]" if style else ratio_txt,
                _fmt(row["cpu_ratio_to_default"], ".2f") + "x",
                _fmt(faults, ".3f" if per == "op" else (",.1f" if faults < 100 else ",.0f")),
                _fmt(row["loop_stime_s"], ".2f"),
                _fmt_mb(row["peak_rss"]),
                _fmt(row["rss_over_live"], ".2f") if meaningful else "-",
                _fmt_mb(row["rss_after_free"]),
                _fmt(row["after_free_over_baseline"] / MB, "+.1f"))
        console.print(t)
        noisy = noisy_line(rows, unit)
        if noisy:
            console.print(f"  [yellow]*[/] {noisy}")
        if rows:
            bases = [r["baseline_rss"] for r in rows.values()]
            any_row = next(iter(rows.values()))
            console.print(
                f"  import baseline RSS {min(bases) / MB:.1f}-{max(bases) / MB:.1f} MB; "
                f"peak live {_fmt_mb(any_row['peak_live_bytes'])} MB "
                f"({'measured by the pool' if any_row['peak_live_source'] == 'pool' else 'analytic estimate: no mempool row'}); "
                f"rounds {max(r['rounds'] for r in rows.values())}")
        if "floor" in rows:
            console.print("  floor: numpy's default allocator running the same arithmetic, bit for "
                          "bit, into arrays made and touched before the loop (nothing large is "
                          "allocated in it): the time no allocator can beat")
        _render_size_table(console, wl, rows, allocators)
        for text in skipped:
            console.print(f"  [yellow]skipped[/] {text}")
        c = consistency[wl]
        if c["identical"]:
            ds = {d for v in c["digests"].values() for d in v}
            console.print(f"  step values identical under every allocator and round "
                          f"(sha256 {next(iter(ds), '-')})")
        else:
            console.print(f"  [bold red]step values DIFFER between allocators:[/] {c['digests']}")
        pool = (rows.get("mempool") or {}).get("pool")
        if pool:
            console.print(
                f"  pool: fragmentation {_fmt(pool['fragmentation'], '.2f')} at loop end "
                f"(max {_fmt(pool['max_fragmentation'], '.2f')}), peak resident {_fmt_mb(pool['peak_resident_bytes'])} MB, "
                f"reserved {_fmt_mb(pool['reserved_bytes'])} MB, largest free "
                f"{_fmt_mb(pool['largest_free_bytes'])} MB at loop end; after freeing: "
                f"resident {_fmt_mb(pool['resident_after_free'])} MB, released "
                f"{_fmt_mb(pool['released_bytes'])} MB; OS calls mmap {pool['mmap_count']}, "
                f"munmap {pool['munmap_count']}, madvise {pool['madvise_count']}, "
                f"mremap {pool['mremap_count']}")
        console.print()
    targets = result.get("targets") or []
    if targets:
        t = Table(title="mempool against its performance targets", title_justify="left",
                  header_style="bold")
        for col in ("workload", "target", "threshold", "measured", ""):
            t.add_column(col)
        for tg in targets:
            v = tg["value"]
            t.add_row(tg["workload"], tg["target"], tg["threshold"],
                      "-" if v is None else f"{v:.2f}",
                      "[green]met[/]" if tg["pass"] else "[red]missed[/]")
        console.print(t)
    for f in result.get("failed") or []:
        console.print(f"[red]failed:[/] {f['workload_name']} / {f['allocator']} "
                      f"(round {f['round']}): {f.get('error')}")
        tail = (f.get("stderr_tail") or f.get("traceback") or "").strip().splitlines()[-5:]
        for line in tail:
            console.print(f"    {line}", markup=False, highlight=False)


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Write the JSON report (atomic replace, so a reader never sees half)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)
