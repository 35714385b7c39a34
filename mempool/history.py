"""What a pool did, and who asked: the allocation history with call sites.

::

    with mempool.history.record(pool, stacks=8) as rec:
        train()                       # every alloc/free of the pool is recorded
        snap = pool.snapshot()        # blocks with the line that made each
    snap.dump("run.json")             # python -m mempool view run.json
    rec.top_sites()                   # who holds the pool's memory now

Every allocation, free and realloc the pool serves (numpy's handler calls,
``Pool.empty``, movable buffers) is recorded with the Python call site that
made it: up to ``stacks`` frames, interned (the same stack is stored once)
and turned into file, line and function only when a snapshot is dumped.  The
pool's own events are recorded too: arenas mapped and unmapped, pages given
back, meshing, the resident limit, requests refused (``PoolExhausted``),
bad pointers caught.  Buffers moved by ``defragment()`` keep their sites.

Events go to a ring of ``max_entries`` (32 bytes each in the ring); beyond
it the oldest are dropped and counted.  The site of every block still live
is kept apart from the ring, so a snapshot names the line that made each
live array however old it is.

Frames are read only when the thread holds the GIL: numpy sometimes calls
its handler without it, and such events are recorded with stack id -2
("no GIL").  When recording is off the pool's fast paths pay nothing (the
handler's bypass flag, as for :mod:`mempool.trace`).

tracemalloc: numpy itself reports every allocation of every handler to
tracemalloc (domain 389047), the pool's included, and the pool does not
report them again.  ``tracemalloc`` therefore keeps giving per-line totals
of numpy data under the pool; this history adds what tracemalloc cannot
see: the order and time of events, frees, the pool's own events, and where
each block sits in the pool (``Pool.snapshot()``).  Both can run at once.

Works with threads (each event names its thread), ``use()`` scopes and
``install()`` (it records the pool, whoever made it current), several pools
(one recording per pool), and fork: the child keeps recording with an empty
history (and the sites of the blocks it inherited).
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import numpy as np

from mempool import _core
from mempool.snapshot import (DEFAULT_MAX_ENTRIES, DEFAULT_STACKS, OPS, POOL_EVENT_KINDS,
                              _columns, describe_site, live_sites, symbolize, top_sites)

__all__ = ["Recording", "record", "start", "stop", "recording_of", "symbolize",
           "describe_site", "live_sites", "top_sites", "OPS", "POOL_EVENT_KINDS",
           "DEFAULT_MAX_ENTRIES", "DEFAULT_STACKS", "EVENT_BYTES"]

#: Ops that add a block (the others remove one).
ADDING_OPS = frozenset(OPS.index(op) for op in ("alloc", "calloc", "realloc", "move"))
#: Bytes one allocation event takes in the ring.
EVENT_BYTES = _core.HISTORY_EVENT_BYTES
STACK_UNKNOWN, STACK_NO_GIL = -1, -2

_lock = threading.Lock()
_recordings: Dict[int, "Recording"] = {}   # id(pool) -> the recording


def _pool_for(pool: Any):
    """``pool``, or the pool numpy allocates from here, or the installed one,
    or the default pool."""
    from mempool.pool import Pool
    if pool is not None:
        if not isinstance(pool, Pool):
            raise TypeError(f"expected a mempool.Pool or None, got {pool!r}")
        return pool
    current = _core.handler_pool()
    if current is not None:
        return current
    import mempool
    return mempool.installed() or mempool.default_pool()


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


class Recording:
    """One pool's history recording (see :func:`record`).

    Use it as a context manager or call :meth:`start` / :meth:`stop`.  The
    events stay readable after :meth:`stop`, until the pool's next recording
    starts.
    """

    def __init__(self, pool: Any = None, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 stacks: int = DEFAULT_STACKS) -> None:
        self.pool = _pool_for(pool)
        self.max_entries = _positive_int("max_entries", max_entries, 1)
        self.stacks = _positive_int("stacks", stacks, 0)
        if self.stacks > 128:
            raise ValueError(f"stacks must be at most 128 frames, got {stacks!r}")

    def start(self) -> "Recording":
        """Start recording (forgets the pool's previous history)."""
        with _lock:
            other = _recordings.get(id(self.pool))
            if other is not None and other.recording:
                raise RuntimeError("this pool's history is already being recorded "
                                   "(one recording per pool at a time)")
            _core._history_start(self.pool, self.max_entries, self.stacks)
            _recordings[id(self.pool)] = self
        return self

    def stop(self) -> "Recording":
        """Stop recording; the events stay readable."""
        with _lock:
            if not self.pool.closed:
                _core._history_stop(self.pool)
        return self

    def __enter__(self) -> "Recording":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def recording(self) -> bool:
        """True while recording."""
        return not self.pool.closed and _core._history_recording(self.pool)

    def info(self) -> Dict[str, Any]:
        """Figures: ``recorded``, ``held``, ``dropped`` (overwritten by the
        ring), ``no_gil`` (events without a stack), ``pool_held``,
        ``pool_dropped``, ``max_entries``, ``t0_unix_ns``, ``now_t_ns``,
        ``stack_depth``, ``live_blocks`` (blocks with a known site)."""
        return _core._history_info(self.pool) or {}

    def events(self) -> Dict[str, np.ndarray]:
        """The allocation events held, oldest first, as columns: ``t_ns``,
        ``op`` (index into :data:`OPS`), ``address``, ``size``, ``stack``
        (stack id, -1 unknown, -2 no GIL) and ``thread`` (OS thread id)."""
        return _columns(_core._history_events(self.pool), {"t_ns": "<u8", "op": "u1", "address": "<u8", "size": "<u8",
                              "stack": "<i4", "thread": "<u4"})

    def pool_events(self) -> Dict[str, np.ndarray]:
        """The pool's own events held, oldest first, as columns: ``t_ns``,
        ``kind`` (the core's kind: ``_core.event_names()[kind]``), ``address``, ``size``,
        ``arg``, ``stack``."""
        return _columns(_core._history_pool_events(self.pool), {"t_ns": "<u8", "kind": "<i4", "address": "<u8", "size": "<u8",
                              "arg": "<u8", "stack": "<i4"})

    def live_sites(self) -> Dict[str, np.ndarray]:
        """The blocks made while recording and still live: ``address``,
        ``size`` (requested) and ``stack`` columns, in no order."""
        return live_sites(self.pool)

    def top_sites(self, n: int = 5) -> List[Dict[str, Any]]:
        """The ``n`` call sites holding the most live bytes now (see
        :func:`top_sites`)."""
        return top_sites(self.pool, n)

    def snapshot(self):
        """``self.pool.snapshot()``."""
        return self.pool.snapshot()

    def dump(self, path: Any) -> Any:
        """Take a snapshot and write it as JSON (docs/snapshot-schema.md)."""
        return self.snapshot().dump(path)

    def __repr__(self) -> str:
        info = self.info()
        state = "recording" if self.recording else "stopped"
        return (f"<mempool.history.Recording {state}: {info.get('held', 0)} events held, "
                f"{info.get('dropped', 0)} dropped, stacks={self.stacks}>")


def record(pool: Any = None, *, max_entries: int = DEFAULT_MAX_ENTRIES,
           stacks: int = DEFAULT_STACKS) -> Recording:
    """A :class:`Recording` of ``pool``'s history, to use as a context
    manager (``with record(): ...``) or with ``.start()`` / ``.stop()``.

    ``pool`` None: the pool numpy allocates from in this context (``use()``,
    ``install()``), else the default pool.  ``max_entries``: events kept (a
    ring; the oldest are dropped beyond it, 32 bytes each).  ``stacks``:
    frames kept per call site (0: none; the cost grows with it)."""
    return Recording(pool, max_entries=max_entries, stacks=stacks)


def start(pool: Any = None, *, max_entries: int = DEFAULT_MAX_ENTRIES,
          stacks: int = DEFAULT_STACKS) -> Recording:
    """``record(...).start()``: start recording and return the recording."""
    return record(pool, max_entries=max_entries, stacks=stacks).start()


def stop(pool: Any = None) -> Optional[Recording]:
    """Stop ``pool``'s recording (see :func:`record` for ``None``); return
    it, or None when it had none."""
    rec = recording_of(_pool_for(pool))
    return rec.stop() if rec is not None else None


def recording_of(pool: Any) -> Optional[Recording]:
    """The last recording started on ``pool`` (running or stopped), or None."""
    with _lock:
        return _recordings.get(id(pool)) if pool is not None else None


