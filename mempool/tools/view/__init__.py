"""``python -m mempool view SNAPSHOT [SNAPSHOT...] [-o page.html]``: one
self-contained HTML page that shows what pools held and why.

The page has, per snapshot (several side by side, e.g. one per Dask worker
from ``mempool.dask.snapshot(client)``):

* the active-memory timeline: live bytes over the history, stacked by call
  site (or one band per block once zoomed in to few blocks), the pool's own
  events as markers, drag to zoom, click to pick a moment;
* the allocator state: each arena or direct mapping as a row of blocks
  coloured by state (live, cached, free hole, given back, meshed, movable,
  pinned) at the snapshot; at an earlier moment, the blocks live then;
* the top call sites at the peak, at a chosen moment or at the snapshot;
* why the memory is held: live, rounding, caches, holes, buffers, pinned,
  and the part of the process RSS outside the pool.

It needs only numpy: the page is plain JavaScript and canvas, inlined, with
the snapshots' data precomputed by :mod:`mempool.tools.view.model`; it makes
no network request and works from ``file://``.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from mempool.snapshot import Snapshot, SnapshotError, load
from mempool.tools.view import model as _model

__all__ = ["main", "write_html", "render_html", "load_all", "check"]

_HERE = Path(__file__).resolve().parent
#: The page's scripts, inlined in this order into one function scope.
JS_FILES = ("base.js", "data.js", "timeline.js", "state.js", "panel.js")
_TABLES = {"segments": ("address", "size", "resident", "kind", "heap", "granule", "parent",
                        "size_class", "block_size", "mesh_owner"),
           "blocks": ("address", "size", "requested", "state", "segment", "site")}
_HISTORY_TABLES = {"events": ("t_ns", "op", "address", "size", "stack", "thread"),
                   "pool_events": ("t_ns", "kind", "address", "size", "arg", "stack")}


def _table(where: str, obj: Any, columns: Sequence[str]) -> None:
    if not isinstance(obj, dict):
        raise SnapshotError(f"{where} is not a table (an object of columns)")
    count = obj.get("count")
    if not isinstance(count, int) or count < 0:
        raise SnapshotError(f"{where} has no valid \"count\"")
    for col in columns:
        values = obj.get(col)
        if not isinstance(values, list):
            raise SnapshotError(f"{where}.{col} is missing")
        if len(values) != count:
            raise SnapshotError(f"{where}.{col} has {len(values)} entries, count says {count}")


def check(snap: Snapshot, name: str = "snapshot") -> None:
    """Raise SnapshotError (naming ``name``) when ``snap`` lacks what the
    viewer reads: the tables, their columns of equal length, the name lists."""
    d = snap.data
    try:
        for key in ("process", "stats", "totals", "pool"):
            if not isinstance(d.get(key), dict):
                raise SnapshotError(f"\"{key}\" is missing")
        for key in ("block_states", "segment_kinds", "heaps"):
            if not isinstance(d.get(key), list) or not d[key]:
                raise SnapshotError(f"\"{key}\" is missing")
        for key, cols in _TABLES.items():
            _table(key, d.get(key), cols)
        if len(set(map(len, (d["blocks"][c] for c in _TABLES["blocks"])))) > 1:
            raise SnapshotError("blocks columns differ in length")
        states = np.asarray(d["blocks"]["state"], dtype=np.int64)
        if states.size and (states.min() < 0 or states.max() >= len(d["block_states"])):
            raise SnapshotError("blocks.state indexes no block state")
        segs = np.asarray(d["blocks"]["segment"], dtype=np.int64)
        if segs.size and (segs.min() < 0 or segs.max() >= d["segments"]["count"]):
            raise SnapshotError("blocks.segment indexes no segment")
        h = d.get("history")
        if h is not None:
            if not isinstance(h, dict):
                raise SnapshotError("\"history\" is neither null nor an object")
            for key, cols in _HISTORY_TABLES.items():
                _table(f"history.{key}", h.get(key), cols)
            for key in ("ops", "pool_event_kinds"):
                if not isinstance(h.get(key), list):
                    raise SnapshotError(f"history.{key} is missing")
        stacks = d.get("stacks", [])
        if not isinstance(stacks, list):
            raise SnapshotError("\"stacks\" is not a list")
    except SnapshotError as exc:
        raise SnapshotError(f"{name}: not a valid version-1 snapshot: {exc}") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise SnapshotError(f"{name}: not a valid version-1 snapshot ({exc})") from None


def load_all(paths: Iterable[Union[str, Path]]) -> List[Snapshot]:
    """The snapshots of ``paths``, each checked; a directory stands for its
    ``*.json`` and ``*.json.gz`` files, by name.  SnapshotError on the first
    bad one."""
    out: List[Snapshot] = []
    for path in map(Path, paths):
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")))
            if not files:
                raise SnapshotError(f"{path}: a directory without *.json snapshots")
        for f in files:
            snap = load(f)
            check(snap, str(f))
            out.append(snap)
    return out


def _version() -> str:
    from mempool.snapshot import _version as v
    return v()


def render_html(snapshots: Sequence[Snapshot], top_bands: int = _model.TOP_BANDS) -> str:
    """The page for ``snapshots`` as one HTML string."""
    models = []
    for snap in snapshots:
        models.append(_model.build(snap.as_dict() if _has_arrays(snap) else snap.data,
                                   top_bands=top_bands))
    payload = {"generator": f"mempool {_version()} (python -m mempool view)",
               "snapshots": models}
    # "<" only occurs inside JSON strings: escaped, no text can end the script
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    labels = ", ".join(m["process"]["label"] for m in models)
    parts = {"TITLE": html.escape(f"mempool view: {labels}"),
             "CSS": (_HERE / "viewer.css").read_text(encoding="utf-8"),
             "JS": "\n".join((_HERE / "js" / name).read_text(encoding="utf-8")
                             for name in JS_FILES),
             "DATA": data}
    template = (_HERE / "page.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], template)


def _has_arrays(snap: Snapshot) -> bool:
    return any(isinstance(v, np.ndarray) for v in snap.data["blocks"].values())


def write_html(snapshots: Union[Snapshot, Sequence[Snapshot], Dict[str, Snapshot]],
               path: Union[str, Path], top_bands: int = _model.TOP_BANDS) -> Path:
    """Write the viewer page for one snapshot, a list of them, or the dict
    ``mempool.dask.snapshot(client)`` returns; return the path."""
    if isinstance(snapshots, Snapshot):
        snapshots = [snapshots]
    elif isinstance(snapshots, dict):
        snapshots = list(snapshots.values())
    snaps = list(snapshots)
    if not snaps:
        raise ValueError("write_html needs at least one snapshot")
    for i, s in enumerate(snaps):
        if not isinstance(s, Snapshot):
            raise TypeError(f"expected mempool.snapshot.Snapshot objects, got {type(s).__name__} "
                            f"at position {i}")
    path = Path(path)
    path.write_text(render_html(snaps, top_bands), encoding="utf-8")
    return path


def _default_output(paths: Sequence[str]) -> Path:
    if len(paths) == 1 and not Path(paths[0]).is_dir():
        name = Path(paths[0]).name
        for suffix in (".json.gz", ".json", ".gz"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return Path(paths[0]).with_name(name + ".html")
    return Path("mempool-view.html")


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m mempool view``."""
    parser = argparse.ArgumentParser(
        prog="python -m mempool view",
        description="Write one self-contained HTML page (no network, works from file://) "
                    "showing snapshots side by side: the active-memory timeline by call site "
                    "with the pool's events, the allocator state (segments and blocks), the "
                    "top call sites at the peak and why the memory is held.  Exit status 2 "
                    "when a file is not a snapshot this mempool reads.")
    parser.add_argument("snapshots", nargs="+", metavar="SNAPSHOT",
                        help="a snapshot file (JSON, or .json.gz) as pool.snapshot().dump(), "
                             "run --history or mempool.dask.snapshot write it, or a directory "
                             "of them")
    parser.add_argument("-o", "--output", metavar="PAGE.html", default=None,
                        help="the page to write (default: the snapshot's name with .html, "
                             "or mempool-view.html for several)")
    parser.add_argument("--top", type=int, default=_model.TOP_BANDS, metavar="N",
                        help=f"call sites drawn as bands of their own (default "
                             f"{_model.TOP_BANDS}; the rest are 'other')")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.add_argument("--screenshot", metavar="PNG", default=None,
                        help="also write a PNG of the whole page, taken by headless Chromium "
                             "(apt-get install chromium)")
    parser.add_argument("--width", type=int, default=1400, metavar="PX",
                        help="the screenshot's width in CSS pixels (default 1400)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m mempool view``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 1 <= args.top <= 64:
        print(f"python -m mempool view: --top must be 1..64, got {args.top}", file=sys.stderr)
        return 2
    try:
        snaps = load_all(args.snapshots)
    except SnapshotError as exc:
        print(f"python -m mempool view: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else _default_output(args.snapshots)
    t0 = time.perf_counter()
    try:
        write_html(snaps, out, args.top)
    except OSError as exc:
        print(f"python -m mempool view: cannot write {out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    events = sum((s.data.get("history") or {}).get("events", {}).get("count", 0) for s in snaps)
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB, {len(snaps)} snapshot"
          f"{'s' if len(snaps) > 1 else ''}, {events:,} events, "
          f"{time.perf_counter() - t0:.1f} s)")
    if args.screenshot:
        from mempool.tools.view.browser import Browser, BrowserError
        try:
            with Browser(width=args.width, height=900) as browser:
                browser.open(out)
                errors = browser.errors()
                browser.screenshot(args.screenshot)
        except BrowserError as exc:
            print(f"python -m mempool view: --screenshot: {exc}", file=sys.stderr)
            return 2
        if errors:
            print(f"python -m mempool view: the page reported errors: {errors}", file=sys.stderr)
            return 1
        print(f"wrote {args.screenshot}")
    if args.open:
        import webbrowser
        webbrowser.open(out.resolve().as_uri())
    return 0
