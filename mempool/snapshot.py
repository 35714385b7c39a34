"""``Pool.snapshot()``: every segment and block of a pool at one moment, with
the history recorded so far, as the documented JSON (docs/snapshot-schema.md)
or as PyTorch's memory_viz snapshot.

The walk itself is the core's (``mp_pool_walk``, every lock of the pool held
while it runs); this module turns its columns into the format: segments
sorted by address, blocks by segment and address, block sites joined from
the history's live blocks, and only the stacks, frames and strings the file
uses, renumbered.  Building it allocates with numpy's default handler, so a
snapshot never changes the pool it describes.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import pickle
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from mempool import _core

__all__ = ["Snapshot", "SnapshotError", "take", "load", "FORMAT", "VERSION",
           "BLOCK_STATES", "SEGMENT_KINDS", "HEAPS", "process_info"]

FORMAT = "mempool-snapshot"
VERSION = 1
#: Names of ``blocks["state"]`` (the core's mp_walk_state order).
BLOCK_STATES = ("live", "cached", "free", "released", "meshed", "buffer", "pinned", "unused")
#: Names of history events' ``op`` (+ adds a block, - removes one).
OPS = ("alloc", "calloc", "realloc", "free", "realloc_free", "move", "move_free")
#: mempool.history's defaults: events a ring holds, frames per call site.
DEFAULT_MAX_ENTRIES = 1_000_000
DEFAULT_STACKS = 8
#: Names of the history's pool events' ``kind`` in the format.
_KIND_NAMES = _core.event_names()   # index = the core's kind (0 unused)
POOL_EVENT_KINDS = tuple(n for n in _KIND_NAMES if n not in (None, "move"))
SEGMENT_KINDS = ("arena", "slab", "direct")
HEAPS = ("page", "huge", "mesh", "direct")
_LIVE, _BUFFER, _PINNED = 0, 5, 6
_HAS_SITE = (_LIVE, _BUFFER, _PINNED)

_SEG_DTYPES = {"address": "<u8", "size": "<u8", "resident": "<u8", "mesh_owner": "<u8",
               "parent": "<i4", "size_class": "<i4", "block_size": "<u4", "granule": "<u4",
               "kind": "u1", "heap": "u1"}
_BLOCK_DTYPES = {"address": "<u8", "size": "<u8", "requested": "<u8", "segment": "<u4",
                 "state": "u1"}


class SnapshotError(ValueError):
    """A snapshot file that is missing, not JSON, or not a mempool snapshot
    of a version this mempool reads."""


@contextlib.contextmanager
def _outside_pool() -> Iterator[None]:
    """numpy's default handler in this context: arrays made here do not
    come from (or get recorded by) any pool."""
    previous = _core.set_handler(_core.default_handler())
    try:
        yield
    finally:
        _core.set_handler(previous)


def _frombuffer(raw: Dict[str, Any], dtypes: Dict[str, str]) -> Dict[str, np.ndarray]:
    """Columns of bytes (the first raw["count"] entries, when given) as int64."""
    out = {}
    for key, dt in dtypes.items():
        arr = np.frombuffer(raw[key], dtype=dt)
        if "count" in raw:
            arr = arr[:raw["count"]]
        out[key] = arr.astype(np.int64)
    return out


_LIBRARY_DIRS: Optional[Tuple[str, ...]] = None


def is_library_file(path: str) -> bool:
    """True for a file of numpy or mempool itself: not the program's own
    line (a viewer names a stack by its first frame that is not one)."""
    global _LIBRARY_DIRS
    if _LIBRARY_DIRS is None:
        _LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
                              for f in (np.__file__, __file__))
    return os.path.abspath(path).startswith(_LIBRARY_DIRS)


#: Set by mempool.dask on a worker: the label and address snapshots carry.
_worker_address: Optional[str] = None


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("mempool")
    except Exception:  # not installed as a distribution: a source tree
        return "unknown"


def process_info() -> Dict[str, Any]:
    """The ``process`` object of a snapshot: label, host, pid, argv, worker
    (the Dask worker address, or None), versions."""
    worker = _worker_address
    if worker is None and "distributed" in sys.modules:
        try:
            from distributed import get_worker
            worker = get_worker().address
        except (ImportError, ValueError):
            worker = None
    host = socket.gethostname()
    return {"label": worker or f"{host}:{os.getpid()}", "host": host, "pid": os.getpid(),
            "argv": [str(a) for a in sys.argv], "worker": worker,
            "python": sys.version.split()[0], "numpy": np.__version__,
            "mempool": _version()}


def _json_config(config: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(config)
    if isinstance(out.get("decay"), float) and out["decay"] == float("inf"):
        out["decay"] = None
    return out


class _Interner:
    """Renumbers the stack ids a snapshot uses, with their frames and the
    strings of those frames."""

    def __init__(self) -> None:
        self.stack_ids: Dict[int, int] = {}
        self.stacks: List[List[int]] = []
        self.frame_ids: Dict[int, int] = {}
        self.frames: Dict[str, List[int]] = {"file": [], "line": [], "function": [],
                                             "library": []}
        self.string_ids: Dict[str, int] = {}
        self.strings: List[str] = []

    def _string(self, s: str) -> int:
        i = self.string_ids.get(s)
        if i is None:
            i = self.string_ids[s] = len(self.strings)
            self.strings.append(s)
        return i

    def _frame(self, frame_id: int) -> int:
        i = self.frame_ids.get(frame_id)
        if i is None:
            info = _core.frame_info(frame_id) or ("<unknown>", 0, "<unknown>")
            i = self.frame_ids[frame_id] = len(self.frames["line"])
            self.frames["file"].append(self._string(str(info[0])))
            self.frames["line"].append(int(info[1]))
            self.frames["function"].append(self._string(str(info[2])))
            self.frames["library"].append(int(is_library_file(str(info[0]))))
        return i

    def remap(self, ids: np.ndarray) -> np.ndarray:
        """Stack ids of the process -> ids of this snapshot (negatives kept)."""
        if len(ids) == 0:
            return ids.astype(np.int64)
        uniq, inverse = np.unique(ids, return_inverse=True)
        mapped = np.empty(len(uniq), dtype=np.int64)
        for k, sid in enumerate(uniq.tolist()):
            if sid < 0:
                mapped[k] = sid
                continue
            new = self.stack_ids.get(sid)
            if new is None:
                frames = _core.stack_frames(sid)
                if frames is None:
                    mapped[k] = -1
                    continue
                new = self.stack_ids[sid] = len(self.stacks)
                self.stacks.append([self._frame(f) for f in frames])
            mapped[k] = new
        return mapped[inverse]


def _history_part(pool: Any, interner: _Interner) -> Optional[Dict[str, Any]]:
    info = _core._history_info(pool)
    if info is None:
        return None
    ev = _frombuffer(_core._history_events(pool),
                     {"t_ns": "<u8", "op": "u1", "address": "<u8", "size": "<u8",
                      "stack": "<i4", "thread": "<u4"})
    pe = _frombuffer(_core._history_pool_events(pool),
                     {"t_ns": "<u8", "kind": "<i4", "address": "<u8", "size": "<u8",
                      "arg": "<u8", "stack": "<i4"})
    threads, thread_index = np.unique(ev["thread"], return_inverse=True)
    ev["thread"] = thread_index.astype(np.int64)
    ev["stack"] = interner.remap(ev["stack"])
    pe["stack"] = interner.remap(pe["stack"])
    # kinds as indexes of POOL_EVENT_KINDS; error codes back to negatives
    kind_index = {i: POOL_EVENT_KINDS.index(n) for i, n in enumerate(_KIND_NAMES)
                  if n in POOL_EVENT_KINDS}
    keep = np.isin(pe["kind"], list(kind_index))
    pe = {k: v[keep] for k, v in pe.items()}
    error = POOL_EVENT_KINDS.index("error")
    pe["kind"] = np.array([kind_index[k] for k in pe["kind"].tolist()], dtype=np.int64)
    is_error = pe["kind"] == error
    pe["arg"][is_error] = pe["arg"][is_error].astype(np.uint64).view(np.int64)
    return {
        "recording": bool(_core._history_recording(pool)),
        "stack_depth": int(info["stack_depth"]),
        "max_entries": max(1, int(info["max_entries"])),
        "start_unix_ns": int(info["t0_unix_ns"]),
        "taken_t_ns": int(info["now_t_ns"]),
        "recorded": int(info["recorded"]),
        "dropped": int(info["dropped"]),
        "no_gil": int(info["no_gil"]),
        "ops": list(OPS),
        "threads": [int(t) for t in threads.tolist()],
        "events": {"count": int(len(ev["t_ns"])), **ev},
        "pool_event_kinds": list(POOL_EVENT_KINDS),
        "pool_events": {"count": int(len(pe["t_ns"])), **pe},
        "pool_events_dropped": int(info["pool_dropped"]),
    }


def _sort_segments(seg: Dict[str, np.ndarray], blk: Dict[str, np.ndarray]) -> None:
    """Segments by address (a slab after its arena), indexes remapped;
    blocks by segment then address, with first_block/block_count."""
    n = len(seg["address"])
    # an arena and its first slab share an address: the arena (kind 0) first
    order = np.lexsort((seg["kind"], seg["address"]))
    new_index = np.empty(n, dtype=np.int64)
    new_index[order] = np.arange(n)
    for k in list(seg):
        seg[k] = seg[k][order]
    seg["parent"] = np.where(seg["parent"] >= 0, new_index[np.maximum(seg["parent"], 0)], -1)
    owners = seg["mesh_owner"]
    slab_at = {int(a): i for i, (a, kind) in enumerate(zip(seg["address"].tolist(),
                                                           seg["kind"].tolist())) if kind == 1}
    seg["mesh_owner"] = np.array([slab_at.get(int(o), -1) if o else -1
                                  for o in owners.tolist()], dtype=np.int64)
    blk["segment"] = new_index[blk["segment"]] if len(blk["segment"]) else blk["segment"]
    border = np.lexsort((blk["address"], blk["segment"]))
    for k in list(blk):
        blk[k] = blk[k][border]
    seg["first_block"] = np.searchsorted(blk["segment"], np.arange(n), side="left")
    seg["block_count"] = np.searchsorted(blk["segment"], np.arange(n), side="right") - \
        seg["first_block"]


def _block_sites(pool: Any, blk: Dict[str, np.ndarray], interner: _Interner) -> np.ndarray:
    sites = np.full(len(blk["address"]), -1, dtype=np.int64)
    live = live_sites(pool)
    if len(live["address"]) == 0 or len(sites) == 0:
        return sites
    order = np.argsort(live["address"])
    addrs = live["address"][order].astype(np.int64)
    stacks = live["stack"][order].astype(np.int64)
    want = np.isin(blk["state"], _HAS_SITE)
    pos = np.searchsorted(addrs, blk["address"])
    pos = np.minimum(pos, len(addrs) - 1)
    hit = want & (addrs[pos] == blk["address"])
    sites[hit] = stacks[pos[hit]]
    return interner.remap(sites)


def _columns(raw: Optional[Dict[str, Any]], dtypes: Dict[str, str]) -> Dict[str, np.ndarray]:
    if raw is None:
        return {k: np.zeros(0, dtype=dt) for k, dt in dtypes.items()}
    n = raw["count"]
    return {k: np.frombuffer(raw[k], dtype=dt, count=n) for k, dt in dtypes.items()}


def live_sites(pool: Any) -> Dict[str, np.ndarray]:
    """Blocks made while ``pool``'s history was being recorded and still
    live, with their sites (columns ``address``, ``size``, ``stack``); empty
    columns when its history is not being recorded (sites would be stale)."""
    recording = not pool.closed and _core._history_recording(pool)
    return _columns(_core._history_live(pool) if recording else None,
                    {"address": "<u8", "size": "<u8", "stack": "<i4"})


def user_frame(frames: List[Tuple[str, int, str]]) -> Tuple[str, int, str]:
    """The first frame outside numpy and mempool (the program's own line),
    else the first one."""
    for frame in frames:
        if not is_library_file(frame[0]):
            return frame
    return frames[0]


def symbolize(stack_id: int) -> List[Tuple[str, int, str]]:
    """``[(file, line, function), ...]`` of an interned stack of this
    process, innermost first; ``[]`` for -1 (unknown) and -2 (no GIL)."""
    frames = _core.stack_frames(int(stack_id))
    return [] if frames is None else [_core.frame_info(f) for f in frames]


def describe_site(stack_id: int) -> str:
    """One line for a stack: ``file:line in function`` of its first frame
    outside numpy and mempool, or why there is none."""
    if stack_id == -2:
        return "(a thread without the GIL: no frames)"
    frames = symbolize(stack_id)
    if not frames:
        return "(unknown: made before recording, or no Python frame)"
    file, line, func = user_frame(frames)
    return f"{os.path.basename(file)}:{line} in {func}"


def top_sites(pool: Any, n: int = 5) -> List[Dict[str, Any]]:
    """The ``n`` call sites holding the most live bytes of ``pool`` now, as
    dicts: ``bytes``, ``blocks``, ``stack`` (id), ``site`` (one line) and
    ``frames``.  Empty when its history is not being recorded.  Allocates
    nothing from any pool (it serves error messages of an exhausted one)."""
    with _outside_pool():
        live = live_sites(pool)
        if len(live["stack"]) == 0:
            return []
        stacks, inverse = np.unique(live["stack"], return_inverse=True)
        nbytes = np.bincount(inverse, weights=live["size"].astype(np.float64))
        blocks = np.bincount(inverse)
        order = np.argsort(-nbytes, kind="stable")[:n]
        return [{"bytes": int(nbytes[i]), "blocks": int(blocks[i]), "stack": int(stacks[i]),
                 "site": describe_site(int(stacks[i])), "frames": symbolize(int(stacks[i]))}
                for i in order]


def take(pool: Any) -> "Snapshot":
    """Walk ``pool`` now and return its :class:`Snapshot` (``Pool.snapshot``)."""
    from mempool.stats import PoolStats
    raw_stats = pool._stats_raw()
    raw_segs, raw_blocks = _core._walk(pool)
    taken = time.time_ns()
    with _outside_pool():
        raw_stats["process_rss_bytes"] = _core.process_rss() or None
        stats = PoolStats.from_raw(raw_stats)
        seg = _frombuffer(raw_segs, _SEG_DTYPES)
        blk = _frombuffer(raw_blocks, _BLOCK_DTYPES)
        _sort_segments(seg, blk)
        interner = _Interner()
        blk["site"] = _block_sites(pool, blk, interner)
        history = _history_part(pool, interner)
        totals_bytes = np.bincount(blk["state"], weights=blk["size"].astype(np.float64),
                                   minlength=len(BLOCK_STATES))
        totals_entries = np.bincount(blk["state"], minlength=len(BLOCK_STATES))
        data = {
            "format": FORMAT,
            "version": VERSION,
            "process": process_info(),
            "taken_unix_ns": taken,
            "pool": {"config": _json_config(pool.config)},
            "stats": stats.as_dict(),
            "totals": {"bytes": {s: int(b) for s, b in zip(BLOCK_STATES, totals_bytes)},
                       "entries": {s: int(n) for s, n in zip(BLOCK_STATES, totals_entries)}},
            "block_states": list(BLOCK_STATES),
            "segment_kinds": list(SEGMENT_KINDS),
            "heaps": list(HEAPS),
            "segments": {"count": int(len(seg["address"])),
                         **{k: seg[k] for k in ("address", "size", "resident", "kind", "heap",
                                                "granule", "parent", "size_class",
                                                "block_size", "mesh_owner", "first_block",
                                                "block_count")}},
            "blocks": {"count": int(len(blk["address"])),
                       **{k: blk[k] for k in ("address", "size", "requested", "state",
                                              "segment", "site")}},
            "history": history,
            "frames": {"count": len(interner.frames["line"]), **interner.frames},
            "strings": interner.strings,
            "stacks": interner.stacks,
        }
    return Snapshot(data)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _json_text(obj: Any) -> str:
    """Compact JSON of the snapshot object: integer columns (numpy arrays)
    are written by one join each, the rest by json.dumps."""
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_json_text(v)}"
                              for k, v in obj.items()) + "}"
    if isinstance(obj, np.ndarray):
        return "[" + ",".join(map(str, obj.tolist())) + "]"
    return json.dumps(_jsonable(obj), separators=(",", ":"))


def _open(path: Union[str, os.PathLike], mode: str):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


class Snapshot:
    """One pool at one moment (see docs/snapshot-schema.md for every field).

    ``data`` is the format's object, with numpy arrays for the columns of
    ``segments``, ``blocks``, ``history.events`` and ``history.pool_events``.
    """

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data

    # -------------------------------------------------------------- views --
    @property
    def stats(self) -> Dict[str, Any]:
        """The pool's statistics taken with the snapshot (a dict)."""
        return self.data["stats"]

    @property
    def blocks(self) -> Dict[str, np.ndarray]:
        """The blocks table: columns address, size, requested, state, segment, site."""
        return {k: np.asarray(v) for k, v in self.data["blocks"].items() if k != "count"}

    @property
    def segments(self) -> Dict[str, np.ndarray]:
        """The segments table (columns as in the format)."""
        return {k: np.asarray(v) for k, v in self.data["segments"].items() if k != "count"}

    @property
    def history(self) -> Optional[Dict[str, Any]]:
        """The history object, or None."""
        return self.data["history"]

    def live_blocks(self) -> Dict[str, np.ndarray]:
        """The live blocks' columns (state ``live``)."""
        b = self.blocks
        keep = b["state"] == BLOCK_STATES.index("live")
        return {k: v[keep] for k, v in b.items()}

    def live_bytes(self) -> int:
        """Sum of the requested sizes of the live blocks."""
        return int(self.live_blocks()["requested"].sum())

    def stack(self, stack_id: int) -> List[Tuple[str, int, str]]:
        """``[(file, line, function), ...]`` of a stack of this snapshot,
        innermost first; ``[]`` for -1 and -2."""
        if stack_id < 0:
            return []
        f, s = self.data["frames"], self.data["strings"]
        return [(s[f["file"][i]], int(f["line"][i]), s[f["function"][i]])
                for i in self.data["stacks"][stack_id]]

    def user_frame(self, stack_id: int) -> Optional[Tuple[str, int, str]]:
        """The first frame of a stack outside numpy and mempool (the
        program's line), else its first frame; None for -1 and -2."""
        frames = self.stack(stack_id)
        ids = self.data["stacks"][stack_id] if stack_id >= 0 else []
        lib = self.data["frames"].get("library")
        for k, fid in enumerate(ids):
            if lib is None or not lib[fid]:
                return frames[k]
        return frames[0] if frames else None

    def site_of(self, address: int) -> List[Tuple[str, int, str]]:
        """The allocation stack of the block at ``address`` (``[]`` when
        unknown); KeyError when no block starts there."""
        b = self.blocks
        hit = np.flatnonzero(b["address"] == address)
        if len(hit) == 0:
            raise KeyError(f"no block at 0x{address:x}")
        return self.stack(int(b["site"][hit[0]]))

    def as_dict(self) -> Dict[str, Any]:
        """The format's object with plain lists (ready for json)."""
        return _jsonable(self.data)

    # ------------------------------------------------------------ writing --
    def dump(self, path: Union[str, os.PathLike]) -> Path:
        """Write the snapshot as JSON (gzip-compressed when ``path`` ends in
        ``.gz``); return the path."""
        path = Path(path)
        text = _json_text(self.data)
        with _open(path, "wt") as f:
            f.write(text)
        return path

    def to_memory_viz(self) -> Dict[str, Any]:
        """The snapshot in PyTorch's memory_viz layout (``segments`` with
        ``blocks``, ``device_traces``), as ``torch.cuda.memory._snapshot()``
        makes it; see the README's "memory_viz export" for the mapping."""
        return _to_memory_viz(self)

    def dump_memory_viz(self, path: Union[str, os.PathLike]) -> Path:
        """Write :meth:`to_memory_viz` as the pickle that pytorch.org/memory_viz
        and ``python -m torch.cuda._memory_viz`` open; return the path."""
        path = Path(path)
        with open(path, "wb") as f:
            pickle.dump(self.to_memory_viz(), f, protocol=4)
        return path

    def summary(self) -> str:
        """One line: who, how many segments and blocks, live, history."""
        h = self.history
        hist = (f", history {h['events']['count']} events ({h['dropped']} dropped)"
                if h else "")
        t = self.data["totals"]["bytes"]
        from mempool.errors import format_bytes as fb
        return (f"{self.data['process']['label']}: {self.data['segments']['count']} segments, "
                f"{self.data['blocks']['count']} blocks; live {fb(t['live'])}, cached "
                f"{fb(t['cached'])}, free {fb(t['free'])}, released {fb(t['released'])}{hist}")

    def __repr__(self) -> str:
        return f"<mempool.Snapshot {self.summary()}>"


def load(path: Union[str, os.PathLike]) -> Snapshot:
    """Read a snapshot file (JSON, or gzip-compressed JSON); SnapshotError
    when it is not one this mempool reads."""
    path = Path(path)
    try:
        with _open(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as exc:
        raise SnapshotError(f"{path}: not a JSON snapshot ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not a mempool snapshot (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise SnapshotError(f"{path}: snapshot version {data.get('version')!r}; this mempool "
                            f"reads version {VERSION}")
    return Snapshot(data)


# --------------------------------------------------------- memory_viz --

_TORCH_STATE = {"live": "active_allocated", "buffer": "active_allocated",
                "pinned": "active_allocated"}


def _to_memory_viz(snap: Snapshot) -> Dict[str, Any]:
    d = snap.data
    b = snap.blocks
    s = snap.segments
    states = d["block_states"]
    frames_of: Dict[int, List[Dict[str, Any]]] = {}

    def frames(stack_id: int) -> List[Dict[str, Any]]:
        if stack_id not in frames_of:
            frames_of[stack_id] = [{"filename": f, "line": ln, "name": fn}
                                   for f, ln, fn in snap.stack(stack_id)]
        return frames_of[stack_id]

    # A torch segment's blocks tile it: each top-level segment (arena or
    # direct mapping) takes its own blocks and its slabs', by address.
    top = np.where(s["parent"] >= 0, s["parent"], np.arange(len(s["address"])))
    owner_of_block = top[b["segment"]] if len(b["segment"]) else b["segment"]
    order = np.lexsort((b["address"], owner_of_block))
    segments = []
    bounds = np.searchsorted(owner_of_block[order], np.arange(len(s["address"]) + 1))
    for seg_i in range(len(s["address"])):
        if s["parent"][seg_i] >= 0:
            continue
        blocks = []
        allocated = requested = 0
        for j in order[bounds[seg_i]:bounds[seg_i + 1]].tolist():
            state = states[int(b["state"][j])]
            torch_state = _TORCH_STATE.get(state, "inactive")
            block = {"address": int(b["address"][j]), "size": int(b["size"][j]),
                     "requested_size": int(b["requested"][j]), "state": torch_state,
                     "frames": frames(int(b["site"][j])) if torch_state != "inactive" else []}
            if torch_state != "inactive":
                allocated += block["size"]
                requested += block["requested_size"]
            blocks.append(block)
        heap = d["heaps"][int(s["heap"][seg_i])]
        segments.append({
            "device": 0, "address": int(s["address"][seg_i]),
            "total_size": int(s["size"][seg_i]), "allocated_size": allocated,
            "active_size": allocated, "requested_size": requested, "stream": 0,
            "segment_type": "small" if heap == "mesh" else "large",
            "segment_pool_id": (0, 0), "is_expandable": False, "frames": [],
            "blocks": blocks})
    trace: List[Dict[str, Any]] = []
    h = d["history"]
    if h:
        t0_us = h["start_unix_ns"] // 1000
        ev, pe = h["events"], h["pool_events"]
        out: List[Tuple[int, int, Dict[str, Any]]] = []
        adding = {"alloc", "calloc", "realloc", "move"}

        def entry(table: Dict[str, Any], i: int) -> Tuple[int, Dict[str, Any]]:
            # (time in ns, memory_viz's fields every trace entry has) of row i
            t = int(table["t_ns"][i])
            return t, {"addr": int(table["address"][i]), "size": int(table["size"][i]),
                       "stream": 0, "time_us": t0_us + t // 1000,
                       "frames": frames(int(table["stack"][i]))}

        for i in range(int(ev["count"])):
            op = h["ops"][int(ev["op"][i])]
            t, base = entry(ev, i)
            if op in adding:
                out.append((t, len(out), {"action": "alloc", **base}))
            else:
                out.append((t, len(out), {"action": "free_requested", **base}))
                out.append((t, len(out), {"action": "free_completed", **base}))
        seg_actions = {"arena_map": "segment_alloc", "direct_map": "segment_alloc",
                       "arena_unmap": "segment_free", "direct_unmap": "segment_free"}
        for i in range(int(pe["count"])):
            kind = h["pool_event_kinds"][int(pe["kind"][i])]
            t, base = entry(pe, i)
            if kind in seg_actions:
                out.append((t, len(out), {"action": seg_actions[kind], **base}))
            elif kind == "exhausted":
                out.append((t, len(out), {"action": "oom", "device_free": 0, **base}))
        trace = [e for _, _, e in sorted(out, key=lambda x: (x[0], x[1]))]
    return {"segments": segments, "device_traces": [trace],
            "allocator_settings": {"source": "mempool", "version": d["version"],
                                   "process": d["process"]["label"]}}
