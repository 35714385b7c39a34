"""What ``replay`` and ``stress`` share: replay a trace in this process, run
one child process per allocator, and show the rows (a rich table, Markdown,
JSON).

A child is ``python -m mempool.tools.replay --child CONFIG OUT``
(:func:`mempool.tools.replay.child_main`): the pool row replays into a new
``Pool``; every other row replays into libc ``malloc``, which the child's
``LD_PRELOAD`` (found by the demo's peer discovery,
:func:`mempool.tools.demo.runner.discover`) redirects to jemalloc, mimalloc
or tcmalloc.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["ALLOCATORS", "DEFAULT_ALLOCATORS", "replay_here", "run_rows", "add_ratios",
           "markdown", "render", "add_common_arguments", "meta", "write_json",
           "report_failures"]

#: Row names: "malloc" is glibc as numpy uses it by default.
ALLOCATORS = ("malloc", "glibc-tuned", "mempool", "jemalloc", "mimalloc", "tcmalloc")
DEFAULT_ALLOCATORS = ("malloc", "mempool", "jemalloc", "mimalloc", "tcmalloc")
RETURN_SLACK = 1 << 20
MIB = 1 << 20


def _within(resident: int, live: int) -> bool:
    return resident <= live * 1.1 + RETURN_SLACK


def replay_here(trace, pool=None, settle_s: float = 0.0, poll_s: float = 0.02,
                sample_every: int = 64, release: bool = True) -> Dict[str, Any]:
    """Replay ``trace`` (a :class:`mempool.trace.Trace`) in this process,
    into ``pool`` or (None) into malloc; return the measurements.

    After the events, resident memory is polled every ``poll_s`` for
    ``settle_s`` seconds with the blocks left live still held; then they
    are freed (``release=True``).
    """
    from mempool import _core
    from mempool.tools._replay import ReplayState
    state = ReplayState(trace.n_ids, pool)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    res = dict(state.run(trace.records, sample_every=sample_every))
    res["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    res["ns_per_op"] = res["elapsed_ns"] / max(1, res["ops"])
    res["rss_peak_delta"] = res["rss_peak"] - res["rss_start"]
    if pool is not None:
        st = pool.stats()
        res["pool_peak_resident"] = st.peak_resident_bytes
        res["pool_peak_live"] = st.peak_live_bytes

    # Two views of "resident": the process's RSS over its pre-replay level
    # (every row, comparable), and the pool's own accounting (pool row).
    probes = {"": lambda: max(0, _core.process_rss() - res["rss_start"])}
    if pool is not None:
        probes["pool_"] = lambda: pool.stats().resident_bytes
    start = time.monotonic()
    for key, probe in probes.items():
        res[key + "resident_at_end"] = first = probe()
        res[key + "return_s"] = 0.0 if _within(first, res["live_bytes"]) else None
    res["series"] = []  # [seconds, RSS delta, pool resident or None] per poll
    while time.monotonic() - start < settle_s:
        time.sleep(poll_s)
        now = {key: probe() for key, probe in probes.items()}
        t = round(time.monotonic() - start, 3)
        res["series"].append([t, now[""], now.get("pool_")])
        for key, value in now.items():
            if res[key + "return_s"] is None and _within(value, res["live_bytes"]):
                res[key + "return_s"] = t
    res["settle_s"] = settle_s
    for col, (key, probe) in enumerate(probes.items(), start=1):
        res[key + "resident_final"] = final = probe()
        # when resident stopped falling: the first poll within 5% (+256 KiB)
        # of where it ended (the decay's return time, whatever is kept)
        res[key + "settled_s"] = next(
            (row[0] for row in res["series"] if row[col] <= final * 1.05 + (256 << 10)),
            0.0 if not res["series"] else None)
    if release:
        state.release()
    return res


def run_rows(cfg: Dict[str, Any], allocators: Sequence[str], rounds: int = 1,
             timeout_s: float = 600.0, on_row=None) -> List[Dict[str, Any]]:
    """Run one child per available allocator with ``cfg`` (``trace`` path or
    ``stress`` parameters, ``settle_s``), ``rounds`` times in an order
    rotated each round (so machine noise hits every row alike); rows of the
    unavailable allocators say why they were skipped.

    A row holds its first round's memory figures (they repeat) and the
    median time per event over the rounds (``ns_per_op_rounds``: all).
    """
    from mempool.tools.demo import runner
    names = ["default" if a == "malloc" else a for a in allocators]
    found = list(zip(allocators, runner.discover(names)))
    rows = {name: {"allocator": name} for name in allocators}
    active = []
    for name, alloc in found:
        if alloc.available:
            active.append((name, alloc))
        else:
            rows[name].update(status="skipped", reason=alloc.reason)
    for r in range(max(1, rounds)):
        shift = r % max(1, len(active))
        for name, alloc in active[shift:] + active[:shift]:
            child_cfg = dict(cfg, backend="pool" if alloc.use_pool else "malloc")
            rec = _spawn(child_cfg, runner.child_env(alloc), timeout_s)
            row = rows[name]
            if rec["status"] != "ok":
                row.update(rec)  # any failure shows, whatever another round did
            elif "status" not in row:
                row.update(rec, ns_per_op_rounds=[rec["ns_per_op"]])
            elif row["status"] == "ok":
                row["ns_per_op_rounds"].append(rec["ns_per_op"])
            if on_row:
                on_row(dict(rec, allocator=name, round=r))
    for row in rows.values():
        times = sorted(row.get("ns_per_op_rounds", []))
        if row.get("status") == "ok" and times:
            mid = len(times) // 2
            row["ns_per_op"] = (times[mid] if len(times) % 2
                                else (times[mid - 1] + times[mid]) / 2)
    return add_ratios([rows[name] for name in allocators])


def _spawn(cfg: Dict[str, Any], env: Dict[str, str], timeout_s: float) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mempool-replay-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "mempool.tools.replay", "--child", json.dumps(cfg), str(out)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"timed out after {timeout_s:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            return {"status": "error",
                    "error": f"exit {proc.returncode}: " + " | ".join(tail)}
        res = json.loads(out.read_text())
        why = _not_replayed(res)
        # A replay that could not perform every event measured another trace
        return dict(res, status="failed", error=why) if why else dict(res, status="ok")


def _not_replayed(res: Dict[str, Any]) -> str:
    """What of the trace a replay did not perform ("" when it did it all)."""
    parts = []
    failed, bad = int(res.get("failed", 0)), int(res.get("bad_events", 0))
    if failed:
        parts.append(f"{failed} allocation{'s' if failed != 1 else ''} failed (the "
                     f"allocator returned NULL)")
    if bad:
        parts.append(f"{bad} event{'s' if bad != 1 else ''} did not fit the block's "
                     f"history and {'were' if bad != 1 else 'was'} skipped")
    return "; ".join(parts)


def report_failures(prog: str, what: str, rows: List[Dict[str, Any]]) -> int:
    """One line on stderr per row that failed or errored; the count."""
    bad = [r for r in rows if r.get("status") in ("failed", "error")]
    for r in bad:
        print(f"{prog}: {what} under {r['allocator']}: {r['error']}", file=sys.stderr)
    return len(bad)


def add_ratios(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Add the ratio columns (to peak live, to the malloc row's time)."""
    base = next((r for r in rows if r["allocator"] == "malloc" and r["status"] == "ok"),
                None)
    for r in rows:
        if r.get("status") != "ok":
            continue
        peak = max(1, r["peak_live_bytes"])
        r["peak_rss_ratio"] = r["rss_peak_delta"] / peak
        if "pool_peak_resident" in r:
            r["pool_peak_ratio"] = r["pool_peak_resident"] / peak
        # a ratio to a few leftover bytes says nothing: MiB are shown instead
        r["final_ratio"] = (r["resident_final"] / r["live_bytes"]
                            if r["live_bytes"] >= MIB else None)
        r["time_ratio"] = (r["ns_per_op"] / base["ns_per_op"]
                           if base and base["ns_per_op"] else None)
    return rows


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def markdown(rows: List[Dict[str, Any]]) -> str:
    """The rows as a Markdown table (for the README)."""
    out = ["| allocator | peak RSS / peak live | pool peak resident / peak live | page faults | "
           "final RSS | final / live | back within 10% | time / op vs malloc |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r['allocator']} | {r.get('status')} | | | | | | |")
            continue
        out.append(
            f"| {r['allocator']} | {r['peak_rss_ratio']:.3f} | "
            f"{_fmt(r.get('pool_peak_ratio'), '.3f')} | {_fmt(r.get('faults'), ',')} | "
            f"{r['resident_final'] / MIB:.1f} MiB | "
            f"{_fmt(r['final_ratio'], '.2f')} | "
            f"{_fmt(r['return_s'], '.2f', '> ' + format(r['settle_s'], 'g'))} s | "
            f"{_fmt(r['time_ratio'], '.2f')} |")
    return "\n".join(out)


def render(rows: List[Dict[str, Any]], title: str, console=None) -> None:
    """Print the rows as a rich table (skipped and failed rows explained)."""
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    table = Table(title=title)
    # Short headers: the table must fit an 80-column terminal.
    for col in ("allocator", "peak RSS/live", "pool peak/live", "faults", "final RSS MiB",
                "final/live", "return s", "time vs malloc"):
        table.add_column(col, justify="left" if col == "allocator" else "right")
    for r in rows:
        if r.get("status") != "ok":
            why = str(r.get("reason") or r.get("error"))
            table.add_row(r["allocator"], r.get("status"), *[""] * 6)
            console.print(f"[dim]{r['allocator']} {r.get('status')}: {why}[/dim]")
            continue
        table.add_row(
            r["allocator"], f"{r['peak_rss_ratio']:.3f}",
            _fmt(r.get("pool_peak_ratio"), ".3f"), _fmt(r.get("faults"), ","),
            f"{r['resident_final'] / MIB:.1f}", _fmt(r["final_ratio"], ".2f"),
            _fmt(r["return_s"], ".2f", f"> {r['settle_s']:g}"),
            _fmt(r["time_ratio"], ".2f"))
    console.print(table)
    for r in rows:
        if r.get("status") == "ok" and "pool_resident_final" in r:
            back = _fmt(r["pool_return_s"], ".2f", f"> {r['settle_s']:g}")
            console.print(
                f"{r['allocator']}, own accounting: resident "
                f"{r['pool_resident_at_end'] / MIB:.1f} MiB at the last event, "
                f"{r['pool_resident_final'] / MIB:.1f} MiB after {r['settle_s']:g} s "
                f"(live {r['live_bytes'] / MIB:.1f} MiB), reached after "
                f"{_fmt(r.get('pool_settled_s'), '.2f')} s; back within 10% after {back} s")
    console.print("[dim]peak RSS/live: the process's peak resident over its level before "
                  "the replay, / peak live bytes; pool peak/live: the pool's own "
                  "accounting; faults: minor page faults during the events; final RSS: after the settle time, the trace's last live "
                  "blocks still held, no trim(); return s: seconds until RSS <= 1.1 x live "
                  "+ 1 MiB; time: per event, page writes included, / malloc's.[/dim]")


def _csv_allocators(text: str) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALLOCATORS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown allocator(s) {', '.join(bad) or '(none)'}; choose from "
            f"{', '.join(ALLOCATORS)}")
    return names


def add_common_arguments(p) -> None:
    """Options shared by ``replay`` and ``stress``."""
    p.add_argument("--allocators", type=_csv_allocators, default=list(DEFAULT_ALLOCATORS),
                   help=f"comma-separated subset of {','.join(ALLOCATORS)} "
                        f"(default {','.join(DEFAULT_ALLOCATORS)}); missing peers are skipped")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="also write the rows and the run's parameters as JSON")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run every allocator N times, interleaved; times are medians "
                        "(default 1)")
    p.add_argument("--markdown", action="store_true",
                   help="also print each table as Markdown (for a README)")


def meta() -> Dict[str, Any]:
    import datetime
    import platform
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "command": "python -m mempool " + " ".join(sys.argv[1:])}


def write_json(path: Optional[Path], data: Dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=1, default=str))
