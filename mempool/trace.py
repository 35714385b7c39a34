"""Record the allocation events numpy sends to a pool, save and load them.

``with mempool.trace.record("run.trace") as rec:`` makes a pool current
(like :func:`mempool.use`) and records every call numpy makes to its handler
- alloc, calloc, realloc, free: the size, a block id and the time - into a
C-side buffer (``csrc/trace/trace.c``; the handler pays one pointer test when not
recording).  On exit the events are saved to the file and kept in
``rec.trace``.  ``python -m mempool replay FILE`` replays them against the
pool, malloc and the peer allocators (:mod:`mempool.tools.replay`).

Blocks are named by ids (0, 1, 2... in order of allocation), not pointers,
so any allocator can replay a trace; a realloc keeps its block's id.  A
free (or realloc) of a block allocated before recording began is skipped,
and counted in ``Trace.meta["skipped"]``: a trace never frees what it did
not allocate, so replaying it is always well-formed.

File format (version 1), gzip-compressed (``.trace`` by convention)::

    header   8s magic b"MPTRACE\\0", u32 version (1), u32 record size (24),
             u64 events, u64 block ids, u32 metadata length  (little-endian)
    meta     UTF-8 JSON object of that length (where and how it was made,
             the recording pool's own peak figures)
    records  events x 24 bytes: u64 t_ns, u64 size, u32 id, u8 op, 3 pad

``op`` is 1 alloc, 2 calloc, 3 realloc (size = new size), 4 free (size 0).
An uncompressed file in the same layout loads too.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import numpy as np

__all__ = ["Trace", "TraceError", "Recording", "record", "load", "EVENT_DTYPE",
           "ALLOC", "CALLOC", "REALLOC", "FREE", "OP_NAMES"]

ALLOC, CALLOC, REALLOC, FREE = 1, 2, 3, 4
OP_NAMES = {ALLOC: "alloc", CALLOC: "calloc", REALLOC: "realloc", FREE: "free"}

MAGIC = b"MPTRACE\0"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQI")
#: One event as stored (and as csrc/trace/trace.h lays it out in memory).
EVENT_DTYPE = np.dtype([("t_ns", "<u8"), ("size", "<u8"), ("id", "<u4"),
                        ("op", "u1"), ("pad", "V3")])
assert EVENT_DTYPE.itemsize == 24


class TraceError(ValueError):
    """A trace file or event array that is missing, corrupt or inconsistent."""


def _validate(events: np.ndarray, n_ids: int) -> None:
    """Raise TraceError unless every block's history is alloc/calloc, then
    reallocs, then at most one free, with ids in ``range(n_ids)``."""
    if len(events) == 0:
        return
    ops, ids = events["op"], events["id"]
    bad = ~np.isin(ops, (ALLOC, CALLOC, REALLOC, FREE))
    if bad.any():
        raise TraceError(f"unknown op {int(ops[bad][0])} at event "
                         f"{int(np.flatnonzero(bad)[0])}")
    if int(ids.max()) >= n_ids:
        raise TraceError(f"block id {int(ids.max())} >= header's {n_ids} ids")
    order = np.argsort(ids, kind="stable")
    sid, sop = ids[order], ops[order]
    first = np.ones(len(sid), dtype=bool)
    first[1:] = sid[1:] != sid[:-1]
    wrong = (first & ~np.isin(sop, (ALLOC, CALLOC))) | (
        ~first & ~np.isin(sop, (REALLOC, FREE)))
    after_free = np.zeros(len(sid), dtype=bool)
    after_free[1:] = ~first[1:] & (sop[:-1] == FREE)
    wrong |= after_free
    if wrong.any():
        k = int(order[np.flatnonzero(wrong)[0]])
        raise TraceError(f"event {k} ({OP_NAMES[int(ops[k])]} of block "
                         f"{int(ids[k])}) does not follow that block's history")


def live_series(events: np.ndarray) -> np.ndarray:
    """Live bytes (sum of requested sizes) after each event, as int64."""
    if len(events) == 0:
        return np.zeros(0, dtype=np.int64)
    ids = events["id"]
    size = events["size"].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    prev = np.zeros(len(events), dtype=np.int64)
    same = ids[order][1:] == ids[order][:-1]
    prev_sorted = np.zeros(len(events), dtype=np.int64)
    prev_sorted[1:] = np.where(same, size[order][:-1], 0)
    prev[order] = prev_sorted
    # alloc: +size; realloc: new - old; free: -old (a free's size is 0)
    return np.cumsum(size - prev)


@dataclass
class Trace:
    """A validated event array plus its metadata."""

    events: np.ndarray
    n_ids: int
    meta: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: bytes, meta: Optional[Dict[str, Any]] = None) -> "Trace":
        """Build from packed 24-byte records (as the recorder returns them)."""
        if len(records) % EVENT_DTYPE.itemsize:
            raise TraceError(f"{len(records)} bytes of records is not a multiple of 24")
        events = np.frombuffer(records, dtype=EVENT_DTYPE).copy()
        n_ids = int(events["id"].max()) + 1 if len(events) else 0
        _validate(events, n_ids)
        return cls(events, n_ids, dict(meta or {}))

    @property
    def records(self) -> bytes:
        """The events as packed 24-byte records (what the replay engine reads)."""
        return np.ascontiguousarray(self.events, dtype=EVENT_DTYPE).tobytes()

    def __len__(self) -> int:
        return len(self.events)

    def summary(self) -> Dict[str, Any]:
        """Counts per op, blocks, peak and final live bytes, bytes requested,
        duration: what a replay must reproduce."""
        ev = self.events
        live = live_series(ev)
        counts = {name: int(np.count_nonzero(ev["op"] == op))
                  for op, name in OP_NAMES.items()}
        grow = ev["op"] != FREE
        return {
            "events": len(ev), "blocks": self.n_ids, **counts,
            "peak_live_bytes": int(live.max()) if len(live) else 0,
            "final_live_bytes": int(live[-1]) if len(live) else 0,
            "requested_bytes": int(ev["size"][grow].sum()),
            "largest_bytes": int(ev["size"].max()) if len(ev) else 0,
            "duration_s": float(ev["t_ns"][-1]) / 1e9 if len(ev) else 0.0,
        }

    def save(self, path: Union[str, os.PathLike], compress: bool = True) -> Path:
        """Write the trace (gzip-compressed unless ``compress=False``)."""
        path = Path(path)
        meta = json.dumps(self.meta, sort_keys=True).encode()
        blob = (_HEADER.pack(MAGIC, VERSION, EVENT_DTYPE.itemsize, len(self.events),
                             self.n_ids, len(meta)) + meta + self.records)
        tmp = path.with_name(path.name + ".tmp")
        if compress:
            # mtime=0: the same events give the same bytes (reproducible data)
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                       compresslevel=9, mtime=0) as fh:
                fh.write(blob)
        else:
            tmp.write_bytes(blob)
        tmp.replace(path)
        return path


def load(path: Union[str, os.PathLike]) -> Trace:
    """Read and validate a trace file; TraceError says what is wrong."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, ValueError) as exc:
            raise TraceError(f"{path}: corrupt gzip data ({exc})") from None
    if len(blob) < _HEADER.size or blob[:8] != MAGIC:
        raise TraceError(f"{path}: not a mempool trace (bad magic)")
    magic, version, rec, n_events, n_ids, meta_len = _HEADER.unpack_from(blob)
    if version != VERSION or rec != EVENT_DTYPE.itemsize:
        raise TraceError(f"{path}: unsupported trace version {version} "
                         f"(record size {rec}); this mempool reads version {VERSION}")
    start = _HEADER.size + meta_len
    if len(blob) != start + n_events * rec:
        raise TraceError(f"{path}: truncated or padded: {len(blob)} bytes, header "
                         f"says {start + n_events * rec}")
    try:
        meta = json.loads(blob[_HEADER.size:start].decode()) if meta_len else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: corrupt metadata ({exc})") from None
    events = np.frombuffer(blob, dtype=EVENT_DTYPE, count=n_events, offset=start).copy()
    try:
        _validate(events, n_ids)
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from None
    return Trace(events, int(n_ids), meta)


class Recording:
    """What ``record()`` yields: ``trace`` (set on exit) and ``pool``."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.trace: Optional[Trace] = None

    def count(self) -> int:
        """Events recorded so far."""
        from mempool import _core
        return _core._trace_count(self.pool)


@contextlib.contextmanager
def record(path: Union[str, os.PathLike, None] = None, pool=None,
           use: bool = True, meta: Optional[Dict[str, Any]] = None) -> Iterator[Recording]:
    """Record the handler calls of ``pool`` (default: the default pool)
    inside the block; save them to ``path`` (when given) on exit.

    With ``use=True`` the pool is also made current for the block, as
    ``mempool.use(pool)`` does.  Only calls through the pool's numpy handler
    are recorded (any thread), not those of the test hooks
    (``mempool._testhooks``).  The trace's metadata gets the pool's peak live and peak resident bytes at the end,
    which a replay of the trace can be compared with.  If the block raises,
    recording stops and nothing is saved.
    """
    from mempool import _core, dropin
    if pool is None:
        pool = dropin.default_pool()
    rec = Recording(pool)
    with contextlib.ExitStack() as stack:
        if use:
            stack.enter_context(dropin.use(pool))
        _core._trace_start(pool)
        started = time.time()
        try:
            yield rec
        finally:
            records, skipped, lost = _core._trace_stop(pool)
            stats = pool.stats()
    # Built outside use(pool): the trace's own arrays must not sit in the
    # recorded pool (they would show in its live bytes).
    info = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "python": sys.version.split()[0], "numpy": np.__version__,
            "skipped": int(skipped), "lost": int(lost),
            "pool_peak_live_bytes": stats.peak_live_bytes,
            "pool_peak_resident_bytes": stats.peak_resident_bytes,
            "pool_live_bytes_at_end": stats.live_bytes}
    info.update(meta or {})
    rec.trace = Trace.from_records(records, info)
    if lost:
        raise MemoryError(f"the trace recorder ran out of memory: {lost} events lost")
    if path is not None:
        rec.trace.save(path)
