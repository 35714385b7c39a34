"""Replay an allocation trace against the pool, malloc and the peer allocators.

Policy only: the replay itself is C (``csrc/replay.c``, through
``mempool._core.ReplayState``).  Each allocator gets a fresh child process
(``python -m mempool.tools.replay --child CONFIG``): the pool row replays into a
new ``Pool``; every other row replays into libc ``malloc``, which the child's
``LD_PRELOAD`` (found by the demo's peer discovery,
:func:`mempool.tools.demo.runner.discover`) redirects to jemalloc, mimalloc or
tcmalloc.  Whole-process resident memory is therefore comparable across
rows: every child runs the same interpreter, numpy and tables, and the
figures are deltas over the RSS measured just before the first event.

Per row the child reports peak RSS / peak live, the pool's own peak
resident (pool row), resident after the trace ends (after ``settle_s``,
with the blocks the trace leaves live still held, and no ``trim()``), the
seconds until resident came back within 10% of live (+1 MiB for the
interpreter's own noise), and the time per event.  Times are shown only as
ratios to the malloc row of the same run.

Shipped traces (``mempool/data/traces/NAME.trace``) can be named instead of
a path; :func:`record_workload` re-records them from the demo's workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["TRACE_DIR", "ALLOCATORS", "DEFAULT_ALLOCATORS", "resolve_trace",
           "replay_here", "run_rows", "add_ratios", "render", "record_workload"]

TRACE_DIR = Path(__file__).resolve().parents[1] / "data" / "traces"
#: Row names: "malloc" is glibc as numpy uses it by default.
ALLOCATORS = ("malloc", "glibc-tuned", "mempool", "jemalloc", "mimalloc", "tcmalloc")
DEFAULT_ALLOCATORS = ("malloc", "mempool", "jemalloc", "mimalloc", "tcmalloc")
RETURN_SLACK = 1 << 20
MIB = 1 << 20


def resolve_trace(name_or_path: str) -> Path:
    """A trace file path: an existing path, or the name of a shipped trace."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = TRACE_DIR / f"{name_or_path}.trace"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in TRACE_DIR.glob("*.trace"))
    raise FileNotFoundError(f"no trace file {name_or_path!r} and no shipped trace of "
                            f"that name (shipped: {', '.join(names) or 'none'})")


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
    state = _core.ReplayState(trace.n_ids, pool)
    res = dict(state.run(trace.records, sample_every=sample_every))
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
        pool = mempool.Pool()
    out = replay_here(trace, pool, settle_s=cfg["settle_s"])
    if pool is not None:
        out["pool_check"] = pool.check()
        pool.close()
    return out


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
                row.update(status="error", error=rec["error"])  # any failure shows
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
        return dict(json.loads(out.read_text()), status="ok")


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
    out = ["| allocator | peak RSS / peak live | pool peak resident / peak live | "
           "final RSS | final / live | back within 10% | time / op vs malloc |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r['allocator']} | {r.get('status')} | | | | | |")
            continue
        out.append(
            f"| {r['allocator']} | {r['peak_rss_ratio']:.3f} | "
            f"{_fmt(r.get('pool_peak_ratio'), '.3f')} | {r['resident_final'] / MIB:.1f} MiB | "
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
    for col in ("allocator", "peak RSS/live", "pool peak/live", "final RSS MiB",
                "final/live", "return s", "time vs malloc"):
        table.add_column(col, justify="left" if col == "allocator" else "right")
    for r in rows:
        if r.get("status") != "ok":
            why = str(r.get("reason") or r.get("error"))
            table.add_row(r["allocator"], r.get("status"), *[""] * 5)
            console.print(f"[dim]{r['allocator']} {r.get('status')}: {why}[/dim]")
            continue
        table.add_row(
            r["allocator"], f"{r['peak_rss_ratio']:.3f}",
            _fmt(r.get("pool_peak_ratio"), ".3f"),
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
                  "accounting; final RSS: after the settle time, the trace's last live "
                  "blocks still held, no trim(); return s: seconds until RSS <= 1.1 x live "
                  "+ 1 MiB; time: per event, page writes included, / malloc's.[/dim]")


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


def add_replay_arguments(p) -> None:
    """The ``python -m mempool replay`` options."""
    p.add_argument("traces", nargs="*", metavar="TRACE",
                   help="trace files or shipped trace names (default: every shipped trace: "
                        + ", ".join(sorted(x.stem for x in TRACE_DIR.glob("*.trace"))) + ")")
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds to watch resident memory after the last event (default 1.5)")
    p.add_argument("--record", metavar="WORKLOADS", default=None,
                   help="instead of replaying, re-record demo workloads (comma-separated, "
                        "e.g. mlp,temporaries) into --out-dir")
    p.add_argument("--steps", type=int, default=None,
                   help="with --record: steps (default: the demo's)")
    p.add_argument("--seed", type=int, default=0, help="with --record: seed (default 0)")
    p.add_argument("--out-dir", type=Path, default=TRACE_DIR,
                   help=f"with --record: where to write NAME.trace (default {TRACE_DIR})")
    add_common_arguments(p)


def _meta() -> Dict[str, Any]:
    import datetime
    import platform
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "command": "python -m mempool " + " ".join(sys.argv[1:])}


def _write_json(path: Optional[Path], data: Dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=1, default=str))


def replay_command(ns) -> int:
    """Run ``python -m mempool replay`` from parsed options; exit status."""
    from rich.console import Console

    from mempool import trace as trace_mod
    console = Console()
    if ns.record:
        for name in [n.strip() for n in ns.record.split(",") if n.strip()]:
            out = ns.out_dir / f"{name}.trace"
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
    names = ns.traces or sorted(p.stem for p in TRACE_DIR.glob("*.trace"))
    report: Dict[str, Any] = {"meta": _meta(), "traces": {}}
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
    _write_json(ns.json, report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m mempool replay``."""
    p = argparse.ArgumentParser(
        prog="python -m mempool replay",
        description="Replay recorded allocation traces (files, or the names of shipped "
                    "traces) in C under each allocator, one child process each; print "
                    "peak/final resident and time ratios.")
    add_replay_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mempool replay ARGS``: parse ``argv`` and run; exit status."""
    return replay_command(build_parser().parse_args(
        list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(child_main())
