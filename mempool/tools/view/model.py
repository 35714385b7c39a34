"""What the viewer page draws, computed from one snapshot with numpy.

The page gets, per snapshot, the *allocations* of its history rather than
its raw events: each block the history saw, with the event that added it
(``start``), the event that removed it (``end``), its address, requested
size and allocation site.  From those the page computes every figure at any
moment in one pass (live bytes, the stacked bands, the blocks live at a
chosen moment, the top call sites there), and zooming needs no server.
Pairing events into allocations is done here, where numpy sorts a million
events in a fraction of a second.

Large columns travel as base64 of little-endian typed arrays, each in the
narrowest type that holds it exactly (see :func:`column`); the page decodes
them into JavaScript typed arrays.

Conventions the page relies on:

* event ``i`` happens at moment ``i``; "at moment m" means after event m;
  moment -1 is before the first event held; moment n-1 is the last event.
* an allocation is live at moment m when ``start <= m < end``; ``start`` is
  -1 for a block that was live before the first event held (allocated before
  the recording started, or its event was dropped by the ring), ``end`` is
  n for a block still live after the last event.
* a realloc or a ``defragment()`` move ends one allocation and starts
  another (the move keeps its original site).
"""
from __future__ import annotations

import base64
import os
import re
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["build", "column", "pair_events", "sites", "top_sites_at", "TOP_BANDS"]

#: Call sites drawn as bands of their own (by peak bytes); the rest are "other".
TOP_BANDS = 16
_ADDING = ("alloc", "calloc", "realloc", "move")
_LIVE_STATES = ("live", "buffer", "pinned")
# A file of an installed package or of the standard library: not the
# program's own line, though the format's "library" flag names only numpy
# and mempool (a pandas call allocates ten frames deep inside pandas).
_INSTALLED = re.compile(r"/(site|dist)-packages/|/lib/python3\.\d+t?/|^<frozen ")
# mempool's own tools (the demo's and the benchmarks' workloads) are programs
_TOOLS = re.compile(r"/mempool/tools/")
_INT_TYPES = (("u8", np.uint8), ("i8", np.int8), ("u16", np.uint16), ("i16", np.int16),
              ("u32", np.uint32), ("i32", np.int32))


def column(values: Any) -> Dict[str, Any]:
    """``values`` (integers, exact in a double) as ``{"t": type, "n": count,
    "b": base64}``: the narrowest of u8/i8/u16/i16/u32/i32 that holds them,
    else f64 (addresses, sizes over 4 GiB)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        kind, out = "f64", arr.astype("<f8")
    else:
        arr = arr.astype(np.int64)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        for kind, dt in _INT_TYPES:
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                out = arr.astype(np.dtype(dt).newbyteorder("<"))
                break
        else:
            kind, out = "f64", arr.astype("<f8")
    return {"t": kind, "n": int(arr.size), "b": base64.b64encode(out.tobytes()).decode("ascii")}


def _np(table: Dict[str, Any], key: str) -> np.ndarray:
    return np.asarray(table[key], dtype=np.int64)


def pair_events(op: np.ndarray, address: np.ndarray, size: np.ndarray, stack: np.ndarray,
                adding_ops: Sequence[int]) -> Dict[str, np.ndarray]:
    """The allocations of an event list: each adding event paired with the
    next event at the same address (its free, or, when the record is
    inconsistent, the next block placed there), unpaired removals as blocks
    live from before the first event.  Columns ``start``, ``end``,
    ``address``, ``size``, ``stack``, sorted by ``start``."""
    n = len(op)
    idx = np.arange(n, dtype=np.int64)
    adds = np.isin(op, np.asarray(adding_ops))
    order = np.lexsort((idx, address))
    a_sorted = address[order]
    same_next = np.zeros(n, dtype=bool)
    same_next[:-1] = a_sorted[:-1] == a_sorted[1:]
    adds_sorted = adds[order]
    # an add ends at the next event at its address, else stays live (end = n)
    nxt = np.full(n, n, dtype=np.int64)
    nxt[:-1] = np.where(same_next[:-1], order[1:], n)
    add_pos = np.flatnonzero(adds_sorted)
    # a removal is paired when the event before it at its address is an add
    prev_is_add = np.zeros(n, dtype=bool)
    prev_is_add[1:] = same_next[:-1] & adds_sorted[:-1]
    orphan_pos = np.flatnonzero(~adds_sorted & ~prev_is_add)
    add_ev, orphan_ev = order[add_pos], order[orphan_pos]
    start = np.concatenate([np.full(len(orphan_ev), -1, dtype=np.int64), add_ev])
    end = np.concatenate([orphan_ev, nxt[add_pos]])
    ev = np.concatenate([orphan_ev, add_ev])
    srt = np.lexsort((ev, start))
    return {"start": start[srt], "end": end[srt], "address": address[ev][srt],
            "size": size[ev][srt], "stack": stack[ev][srt]}


def _live_at(allocs: Dict[str, np.ndarray], moment: int) -> np.ndarray:
    return (allocs["start"] <= moment) & (allocs["end"] > moment)


def top_sites_at(allocs: Dict[str, np.ndarray], moment: int,
                 key: str = "site") -> List[Dict[str, int]]:
    """Call sites (the ``key`` column) by live bytes at ``moment``:
    ``[{key, "bytes", "blocks"}]``, largest first (ties: smaller id first)."""
    live = _live_at(allocs, moment)
    ids, inverse = np.unique(allocs[key][live], return_inverse=True)
    nbytes = np.bincount(inverse, weights=allocs["size"][live].astype(np.float64),
                         minlength=len(ids))
    blocks = np.bincount(inverse, minlength=len(ids))
    order = np.lexsort((ids, -nbytes))
    return [{key: int(ids[i]), "bytes": int(nbytes[i]), "blocks": int(blocks[i])}
            for i in order]


def _peaks(allocs: Dict[str, np.ndarray], key: str = "site") -> Dict[int, Tuple[int, int]]:
    """Each site's (``key`` column's) largest live bytes over the history,
    and the first event that made one of its blocks (-1: before the first)."""
    if len(allocs["start"]) == 0:
        return {}
    pos = np.concatenate([allocs["start"], allocs["end"]])
    delta = np.concatenate([allocs["size"], -allocs["size"]])
    ids = np.concatenate([allocs[key], allocs[key]])
    order = np.lexsort((pos, ids))
    pos, delta, ids = pos[order], delta[order], ids[order]
    running = np.cumsum(delta)
    firsts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    offset = np.repeat(np.r_[0, running[firsts[1:] - 1]], np.diff(np.r_[firsts, len(ids)]))
    peaks = np.maximum.reduceat(running - offset, firsts)
    return {int(s): (int(p), int(f)) for s, p, f in zip(ids[firsts], peaks, pos[firsts])}


#: Sites 0 and 1: blocks of unknown site (stack -1) and of threads without
#: the GIL (stack -2).
UNKNOWN_SITE, NO_GIL_SITE = 0, 1


def sites(data: Dict[str, Any]) -> Dict[str, Any]:
    """The call sites of a snapshot's stacks.  A site is the program's own
    line: the innermost frame outside numpy and mempool (the format's
    ``library`` flag), installed packages and the standard library, or in
    mempool's tools (the demo's workloads are programs); a stack
    with none is named by its innermost frame outside numpy and mempool,
    else its innermost frame.  Many stacks reach one line (a pandas call
    allocates through many paths): they are one site.

    Returns the frames for tooltips (``program``: the frame is the program's
    own), ``site_of_stack[s + 2]`` for stack ids -2.. (an array), and per
    site its ``label``, ``file``, ``stack`` (its first stack) and
    ``nstacks`` (how many stacks reach it)."""
    frames = data.get("frames") or {}
    strings = list(data.get("strings") or [])
    short = [os.path.basename(s) or s for s in strings]
    installed = [bool(_INSTALLED.search(s.replace("\\", "/"))) for s in strings]
    f_file, f_line = frames.get("file", []), frames.get("line", [])
    f_func, f_lib = frames.get("function", []), frames.get("library", [])
    tools = [bool(_TOOLS.search(s.replace("\\", "/"))) for s in strings]
    program = [int(tools[f] or (not lib and not installed[f])) for f, lib in zip(f_file, f_lib)]
    stacks = [list(map(int, st)) for st in data.get("stacks") or []]
    table: Dict[str, List[Any]] = {
        "label": ["unknown site (made before the recording, or no Python frame)",
                  "a thread without the GIL (no frames)"],
        "file": ["", ""], "stack": [-1, -2], "nstacks": [0, 0]}
    index: Dict[Any, int] = {}
    site_of = np.empty(len(stacks) + 2, dtype=np.int64)
    site_of[0], site_of[1] = NO_GIL_SITE, UNKNOWN_SITE
    for sid, st in enumerate(stacks):
        pick = next((f for f in st if program[f]), None)
        if pick is None:
            pick = next((f for f in st if not f_lib[f]), st[0] if st else None)
        key = (f_file[pick], f_line[pick], f_func[pick]) if pick is not None else None
        site = index.get(key)
        if site is None:
            site = index[key] = len(table["label"])
            if key is None:
                table["label"].append("(a stack without frames)")
                table["file"].append("")
            else:
                table["label"].append(f"{short[key[0]]}:{key[1]} in {strings[key[2]]}")
                table["file"].append(strings[key[0]])
            table["stack"].append(sid)
            table["nstacks"].append(0)
        table["nstacks"][site] += 1
        site_of[sid + 2] = site
    # two files of one name: the label of the later one says its directory
    first_path: Dict[str, str] = {}
    for i, path in enumerate(table["file"]):
        base = os.path.basename(path)
        if path and first_path.setdefault(base, path) != path:
            parent = os.path.basename(os.path.dirname(path))
            table["label"][i] = f"{parent}/{table['label'][i]}"
    return {"program": program, "stacks": stacks,
            "frames": {"file": [int(x) for x in f_file], "line": [int(x) for x in f_line],
                       "function": [int(x) for x in f_func],
                       "library": [int(x) for x in f_lib]},
            "strings": strings, "short": short, "site_of_stack": site_of, **table}


def _bands(peaks: Dict[int, Tuple[int, int]], n_sites: int, top: int) -> Dict[str, Any]:
    """Bands of the timeline: the ``top`` sites by peak bytes each get one
    (the unknown and no-GIL sites too, when present), the rest share
    "other", drawn last (on top).  Bands stack in the order their sites
    first allocated, so what lives longest lies at the bottom; ``rank`` is
    a band's place by peak (legend order and colour).  ``band_of_site[i]``
    is the band of site ``i``."""
    ranked = sorted(((p, s) for s, (p, _) in peaks.items()), key=lambda x: (-x[0], x[1]))
    special = [s for _, s in ranked if s <= NO_GIL_SITE]
    chosen = [s for _, s in ranked if s > NO_GIL_SITE][:top]
    rest = [s for _, s in ranked if s > NO_GIL_SITE][top:]
    stacked = sorted(special + chosen, key=lambda s: (peaks[s][1], s))
    rank = {s: i for i, s in enumerate(s for _, s in ranked if s in set(special + chosen))}
    bands: List[Dict[str, Any]] = [{"site": s, "peak": peaks[s][0], "rank": rank[s]}
                                   for s in stacked]
    band_of = np.full(max(n_sites, 2), len(bands), dtype=np.int64)
    for i, s in enumerate(stacked):
        band_of[s] = i
    if rest:
        bands.append({"site": None, "peak": None, "rank": len(bands), "sites": len(rest)})
    else:
        band_of[band_of == len(bands)] = max(len(bands) - 1, 0)
    return {"bands": bands, "band_of_site": column(band_of)}


def _regions(h: Dict[str, Any], seg: Dict[str, np.ndarray], ev_t: np.ndarray,
             n: int, heaps: List[str]) -> Dict[str, Any]:
    """The top-level segments (arenas and direct mappings) over the
    history: mapped at event ``start`` (-1: before the first event) and
    unmapped at ``end`` (n: still mapped at the snapshot)."""
    top = np.flatnonzero(seg["parent"] < 0) if len(seg["address"]) else np.zeros(0, int)
    rows = {"address": [], "size": [], "heap": [], "start": [], "end": []}
    open_at: Dict[int, int] = {}   # address -> index in rows of a mapped region

    def add(address: int, size: int, heap: int, start: int, end: int) -> None:
        for k, v in zip(rows, (address, size, heap, start, end)):
            rows[k].append(int(v))

    pe = h["pool_events"] if h else {"count": 0}
    kinds = h["pool_event_kinds"] if h else []
    heap_of_kind = {"arena_map": None, "direct_map": heaps.index("direct")
                    if "direct" in heaps else 0}
    for i in range(int(pe["count"])):
        kind = kinds[int(pe["kind"][i])]
        at = int(np.searchsorted(ev_t, int(pe["t_ns"][i]), side="left"))
        address, size = int(pe["address"][i]), int(pe["size"][i])
        if kind in ("arena_map", "direct_map"):
            heap = heap_of_kind[kind]
            if heap is None:   # an arena: its granule says which heap
                heap = heaps.index("huge") if int(pe["arg"][i]) > 4096 else heaps.index("page")
            open_at[address] = len(rows["address"])
            add(address, size, heap, at - 1, n)
        elif kind in ("arena_unmap", "direct_unmap"):
            if address in open_at:
                rows["end"][open_at.pop(address)] = at
            else:
                heap = heaps.index("direct") if kind == "direct_unmap" else 0
                add(address, size, heap, -1, at)
    for i in top.tolist():
        address = int(seg["address"][i])
        j = open_at.pop(address, None)
        if j is None:
            add(address, int(seg["size"][i]), int(seg["heap"][i]), -1, n)
        else:
            rows["heap"][j] = int(seg["heap"][i])
            rows["size"][j] = int(seg["size"][i])
    order = np.lexsort((np.asarray(rows["start"]), np.asarray(rows["address"])))
    return {k: [v[i] for i in order.tolist()] for k, v in rows.items()}


def _breakdown(data: Dict[str, Any], blk: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Why the memory is held, at the snapshot: parts of the process RSS."""
    states = data["block_states"]
    stats = data["stats"]

    def requested(state: str) -> int:
        keep = blk["state"] == states.index(state)
        return int(blk["requested"][keep].sum())

    def occupied(state: str) -> int:
        return int(data["totals"]["bytes"].get(state, 0))

    held_states = [s for s in _LIVE_STATES if s in states]
    rounding = sum(occupied(s) - requested(s) for s in held_states)
    parts = [
        ("live", "live arrays", requested("live"),
         "bytes the program asked for, in blocks not yet freed"),
        ("rounding", "rounding", rounding,
         "live blocks' size class or granule beyond what was asked"),
        ("cached", "thread caches", occupied("cached"),
         "free small blocks kept in a thread's cache for its next request"),
        ("free", "free holes", occupied("free"),
         "free resident space in slabs and heaps, kept for reuse until it decays"),
        ("buffer", "movable buffers", requested("buffer"),
         "Pool.buffer blocks no view pins (defragment() may move them)"),
        ("pinned", "pinned buffers", requested("pinned"),
         "movable buffers pinned by a view: defragment() must leave them"),
        ("unused", "slab tails", occupied("unused"),
         "bytes at the end of a slab too short for one more block"),
    ]
    resident = int(stats.get("resident_bytes") or 0)
    counted = sum(p[2] for p in parts)
    out = [{"key": k, "label": lbl, "bytes": int(b), "why": why} for k, lbl, b, why in parts]
    out.append({"key": "other", "label": "other pool pages",
                "bytes": resident - counted,
                "why": "the pool's resident estimate minus the blocks above (negative: "
                       "the estimate counts fewer pages than the blocks touch)"})
    rss = stats.get("process_rss_bytes")
    outside = None if rss is None else int(rss) - resident
    out.append({"key": "outside", "label": "outside the pool", "bytes": outside,
                "why": "process RSS minus the pool's resident bytes: the interpreter, "
                       "libraries, other allocators, the pool's metadata"})
    return {"parts": out, "resident": resident, "rss": None if rss is None else int(rss)}


def _state_rows(data: Dict[str, Any], seg: Dict[str, np.ndarray],
                blk: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Rows of the allocator-state view at the snapshot: each top-level
    segment with its own blocks and its slabs', by address."""
    n_seg = len(seg["address"])
    top_of = np.where(seg["parent"] >= 0, seg["parent"], np.arange(n_seg)) if n_seg \
        else np.zeros(0, dtype=np.int64)
    tops = np.flatnonzero(seg["parent"] < 0) if n_seg else np.zeros(0, dtype=np.int64)
    row_of_top = np.full(n_seg, -1, dtype=np.int64)
    row_of_top[tops] = np.arange(len(tops))
    row = row_of_top[top_of[blk["segment"]]] if len(blk["segment"]) else blk["segment"]
    order = np.lexsort((blk["address"], row))
    first = np.searchsorted(row[order], np.arange(len(tops)), side="left")
    count = np.searchsorted(row[order], np.arange(len(tops)), side="right") - first
    return {
        "rows": {"segment": column(tops), "first": column(first), "count": column(count)},
        "blocks": {k: column(blk[k][order]) for k in
                   ("address", "size", "requested", "state", "segment", "site")},
        "segments": {k: column(seg[k]) for k in
                     ("address", "size", "resident", "kind", "heap", "granule", "parent",
                      "size_class", "block_size", "mesh_owner")},
    }


def _site_column(stacks: np.ndarray, site_of: np.ndarray) -> np.ndarray:
    """The site of each stack id (-2.. : index + 2); unknown ids -> unknown."""
    idx = stacks + 2
    ok = (idx >= 0) & (idx < len(site_of))
    return np.where(ok, site_of[np.clip(idx, 0, len(site_of) - 1)], UNKNOWN_SITE)


def build(data: Dict[str, Any], top_bands: int = TOP_BANDS) -> Dict[str, Any]:
    """The page's model of one snapshot (the format's object, as
    ``mempool.snapshot.load`` gives it)."""
    seg = {k: _np(data["segments"], k) for k in data["segments"] if k != "count"}
    blk = {k: _np(data["blocks"], k) for k in data["blocks"] if k != "count"}
    states = data["block_states"]
    h = data.get("history")
    site_info = sites(data)
    site_of = site_info["site_of_stack"]
    site_info["site_of_stack"] = column(site_of)
    model: Dict[str, Any] = {
        "process": data["process"], "taken_unix_ns": data["taken_unix_ns"],
        "config": data["pool"].get("config", {}), "stats": data["stats"],
        "totals": data["totals"], "block_states": states,
        "segment_kinds": data["segment_kinds"], "heaps": data["heaps"],
        "sites": site_info, "breakdown": _breakdown(data, blk),
        "state": _state_rows(data, seg, blk), "history": None,
    }
    n_sites = len(site_info["label"])
    live_mask = np.isin(blk["state"], [states.index(s) for s in _LIVE_STATES if s in states])
    if h is None:
        held = int(live_mask.sum())
        snap_allocs = {"start": np.full(held, -1, dtype=np.int64),
                       "end": np.zeros(held, dtype=np.int64),
                       "size": blk["requested"][live_mask],
                       "site": _site_column(blk["site"][live_mask], site_of)}
        model["bands"] = _bands(_peaks(snap_allocs), n_sites, top_bands)
        return model
    ev = {k: _np(h["events"], k) for k in h["events"] if k != "count"}
    n = len(ev["op"])
    adding = [h["ops"].index(o) for o in _ADDING if o in h["ops"]]
    allocs = pair_events(ev["op"], ev["address"], ev["size"], ev["stack"], adding)
    extra = 0
    if h.get("recording"):
        # live blocks the history never saw made (made before it started, or
        # their event dropped by the ring) are live throughout it
        seen = allocs["address"][allocs["end"] == n]
        missing = live_mask & ~np.isin(blk["address"], seen)
        extra = int(missing.sum())
        if extra:
            for k, v in (("start", np.full(extra, -1)), ("end", np.full(extra, n)),
                         ("address", blk["address"][missing]),
                         ("size", blk["requested"][missing]), ("stack", blk["site"][missing])):
                allocs[k] = np.concatenate([v.astype(np.int64), allocs[k]])
    allocs["site"] = _site_column(allocs["stack"], site_of)
    ev_t = ev["t_ns"]
    pe = h["pool_events"]
    pe_t = _np(pe, "t_ns")
    move_op = h["ops"].index("move") if "move" in h["ops"] else -1
    model["bands"] = _bands(_peaks(allocs), n_sites, top_bands)
    model["history"] = {
        "events": n, "recording": bool(h.get("recording")), "recorded": h["recorded"],
        "dropped": h["dropped"], "no_gil": h["no_gil"], "stack_depth": h["stack_depth"],
        "max_entries": h["max_entries"], "start_unix_ns": h["start_unix_ns"],
        "taken_t_ns": h["taken_t_ns"], "threads": h["threads"],
        "pool_events_dropped": h.get("pool_events_dropped", 0), "from_snapshot": extra,
        "t_us": column(ev_t // 1000),
        "allocs": {k: column(allocs[k]) for k in ("start", "end", "address", "size", "stack")},
        "pool_events": {"kinds": h["pool_event_kinds"],
                        "at": column(np.searchsorted(ev_t, pe_t, side="left")),
                        "t_us": column(pe_t // 1000),
                        **{k: column(_np(pe, k)) for k in ("kind", "address", "size", "arg",
                                                            "stack")}},
        "moves": column(np.flatnonzero(ev["op"] == move_op)),
        "regions": _regions(h, seg, ev_t, n, list(data["heaps"])),
    }
    return model
