"""``mempool.Pool``: argument policy, array constructors and reporting on top
of the native pool object from :mod:`mempool._core`.

Arrays made by a pool's constructors (and every array numpy allocates inside
``mempool.use(pool)``) get their data from the pool through numpy's NEP 49
handler.  numpy keeps the handler capsule in each such array, and the capsule
keeps the pool object alive, so an array never outlives the memory under it.
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import numpy as np

from mempool import _core
from mempool.errors import (ERROR_NAMES, MP_ECORRUPT, MP_ENOMEM,
                            HeapCorruptionWarning, InvalidArgument, PoolBusy, PoolClosed,
                            PoolExhausted, describe_corruption, error_from_code, format_bytes)

if TYPE_CHECKING:  # imported on first use: the dataclasses cost ~5 ms at import
    from mempool.snapshot import Snapshot
    from mempool.stats import DefragReport, PoolStats

__all__ = ["Pool"]

_SIZE_MAX = 2 ** 64 - 1
_SMALL_MAX_LIMIT = 65536          # mempool.h: small_max <= 65536
_CHUNK = 2 << 20                  # mempool.h: a resident limit holds at least one chunk
_HUGE_PAGES = {"off": 0, "on": 1, "auto": 2, False: 0, True: 1}
_HUGE_PAGE_NAMES = {0: "off", 1: "on", 2: "auto"}


def _byte_count(name: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int number of bytes, got {value!r}")
    value = int(value)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum} "
                         f"bytes, got {value!r}")
    return value


def _flag(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return int(bool(value))
    raise TypeError(f"{name} must be True or False, got {value!r}")


def _decay_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"decay must be a number of seconds (or None), got {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"decay must be >= 0 seconds (math.inf: give pages "
                         f"back only on trim()), got {value!r}")
    if math.isinf(seconds):
        return -1
    return int(round(seconds * 1000))


def _debug_default(debug: Any) -> Any:
    """``debug=None`` means: on when the environment has MEMPOOL_DEBUG=1."""
    if debug is not None:
        return debug
    return os.environ.get("MEMPOOL_DEBUG", "").strip().lower() in (
        "1", "true", "yes", "on")


def _resident_limit(value: Any) -> int:
    """Bytes for ``resident_limit`` (0: none), resolved as
    :func:`mempool._limits.resolve_resident_limit` says; the core needs at
    least one 2 MiB chunk."""
    from mempool._limits import resolve_resident_limit
    limit = resolve_resident_limit(value)
    if limit is None:
        return 0
    if isinstance(value, str) and value.strip().lower() == "auto":
        # The cgroup (or Dask) limit covers the whole process: leave room
        # for what it holds outside the pool now (interpreter, libraries).
        limit -= min(limit // 2, _core.process_rss())
    if limit < _CHUNK:
        raise ValueError(f"resident_limit must be at least {_CHUNK} bytes (2 MiB), "
                         f"got {value!r} ({limit} bytes)")
    return limit


def _config_overrides(capacity, small_max, huge_pages, decay, debug,
                      background_purge, retain_arenas=None,
                      resident_limit=None, mesh=False) -> Dict[str, int]:
    cfg: Dict[str, int] = {}
    if _flag("mesh", mesh):
        cfg["mesh"] = 1
    if resident_limit is not None:
        cfg["resident_limit"] = _resident_limit(resident_limit)
    if capacity is not None:
        cfg["capacity"] = _byte_count("capacity", capacity, 1, _SIZE_MAX)
    if small_max is not None:
        cfg["small_max"] = _byte_count("small_max", small_max, 1, _SMALL_MAX_LIMIT)
    try:
        cfg["huge_pages"] = _HUGE_PAGES[huge_pages]
    except (KeyError, TypeError):
        raise ValueError(f"huge_pages must be 'auto', 'on' or 'off' "
                         f"(or True/False), got {huge_pages!r}") from None
    if decay is not None:
        cfg["decay_ms"] = _decay_ms(decay)
    cfg["debug"] = _flag("debug", _debug_default(debug))
    cfg["background_purge"] = _flag("background_purge", background_purge)
    if retain_arenas is not None:
        if isinstance(retain_arenas, bool) or not isinstance(retain_arenas, numbers.Integral):
            raise TypeError(f"retain_arenas must be an int, got {retain_arenas!r}")
        if not 0 <= retain_arenas < 2**32:
            raise ValueError(f"retain_arenas must be between 0 and {2**32 - 1}, "
                             f"got {retain_arenas!r}")
        cfg["retain_arenas"] = int(retain_arenas)
    return cfg


class Pool(_core._PoolBase):
    """A memory pool for numpy arrays.

    Parameters
    ----------
    capacity : int or None
        Most bytes of address space the pool may reserve; None = unlimited.
        A request that does not fit raises :class:`mempool.PoolExhausted`.
    small_max : int or None
        Largest request (bytes, <= 65536) served by size-classed slabs;
        None = the core's default.
    huge_pages : "auto", "on" or "off"
        Whether to advise transparent huge pages: "auto" does it for the
        heap of large blocks only.
    decay : float or None
        Seconds a free page stays resident before it goes back to the OS;
        0 = at once, ``math.inf`` = only on :meth:`trim`; None = default.
    debug : bool or None
        Debug mode: fill fresh (0xAB) and freed (0xDF) memory, put a canary
        after each block's requested size (checked on free, realloc and
        :meth:`check`), and check on reuse that a freed small block was not
        written to.  Findings are counted in ``stats().errors["MP_ECORRUPT"]``
        and issued as :class:`mempool.errors.HeapCorruptionWarning` naming the
        block.  None (the default): on when the environment variable
        ``MEMPOOL_DEBUG=1`` is set.
    background_purge : bool
        Let a background thread give aged pages back, so idle memory
        returns without further calls.
    retain_arenas : int or None
        Arenas (256 MiB of address space each) every heap keeps mapped when
        they are wholly free, so a loop does not map and unmap one every
        step; their pages still go back to the OS.  None = 1; :meth:`trim`
        releases them all.
    resident_limit : int, str or None
        Most bytes the pool keeps resident: before it would pass them, the
        pool gives back every free page it holds, and a request that still
        does not fit raises :class:`mempool.PoolExhausted` (never an OOM kill
        caused by the pool's cache).  Bytes, a size (``"512MiB"``), or
        ``"auto"``: the cgroup memory limit (v1 or v2) or the Dask worker's
        ``memory_limit``, whichever is smaller, less what the process holds
        outside the pool when the limit is set (no limit when neither
        applies).  None = no limit.  Settable later (:attr:`resident_limit`).
    mesh : bool
        Compaction without moving (Mesh, PLDI 2019): slab memory is backed by
        a memfd, and the background purger (at most once per decay period)
        and :meth:`trim` merge slabs of a size class whose live blocks do not
        overlap onto one physical page, so arrays scattered over many pages
        stop pinning a page each; no pointer changes.  A thread writing into
        a slab being meshed waits for the copy (a few microseconds) in a
        SIGSEGV handler that passes every other fault on to the handler
        installed before it; a system call writing into that slab at that
        moment (``read()`` into the array) fails with EFAULT.  Off in debug
        mode.  See "Meshing" in the README.

    Arrays allocated by the pool keep it alive.  :meth:`close` frees the pool
    at once (only when nothing is live); otherwise it is freed when the last
    reference (pool object or array) goes away.

    numpy's free cannot fail, so a pointer numpy hands back that the pool
    does not own (double free, foreign or interior pointer) is ignored,
    counted in ``stats().errors``, and reported by a ``RuntimeWarning`` issued
    at once from inside the handler (it takes the GIL with PyGILState_Ensure),
    once per pool; if warnings are errors it goes to ``sys.unraisablehook``.
    """

    # How _core raises: it imports no Python module of the package.
    _error_from_code = staticmethod(error_from_code)
    _PoolClosed = PoolClosed
    _arrow: Any = None   # mempool.arrow's adapter, once Arrow has used the pool

    def __init__(self, capacity: Optional[int] = None, *,
                 small_max: Optional[int] = None, huge_pages: Any = "auto",
                 decay: Optional[float] = None, debug: Optional[bool] = None,
                 background_purge: bool = True,
                 retain_arenas: Optional[int] = None,
                 resident_limit: Any = None, mesh: bool = False) -> None:
        self._open(_config_overrides(capacity, small_max, huge_pages, decay,
                                     debug, background_purge, retain_arenas,
                                     resident_limit, mesh))

    # ------------------------------------------------------------ state --

    @property
    def config(self) -> Dict[str, Any]:
        """The settings the pool runs with, after defaults and rounding."""
        raw = self._config_raw()
        decay_ms = raw["decay_ms"]
        return {
            "capacity": raw["capacity"] or None,
            "small_max": raw["small_max"],
            "arena_bytes": raw["arena_bytes"],
            "huge_min": raw["huge_min"],
            "decay": math.inf if decay_ms < 0 else decay_ms / 1000.0,
            "huge_pages": _HUGE_PAGE_NAMES.get(raw["huge_pages"], raw["huge_pages"]),
            "background_purge": bool(raw["background_purge"]),
            "retain_arenas": raw["retain_arenas"],
            "resident_limit": raw["resident_limit"] or None,
            "debug": bool(raw["debug"]),
            "mesh": bool(raw["mesh"]),
        }

    @property
    def resident_limit(self) -> Optional[int]:
        """The resident limit in bytes, or None.  Set it to bytes, a size
        string, ``"auto"`` or None; a limit below the live bytes is an
        :class:`mempool.InvalidArgument` (a ValueError) with the figures, and
        cached pages over a new limit go back at once."""
        return self._config_raw()["resident_limit"] or None

    @resident_limit.setter
    def resident_limit(self, value: Any) -> None:
        limit = _resident_limit(value) if value is not None else 0
        live = self.stats().live_bytes
        if limit and limit < live:
            raise InvalidArgument(
                f"resident_limit {format_bytes(limit)} is below the "
                f"{format_bytes(live)} live in the pool (live memory cannot be "
                f"given back); nothing changed")
        self._set_resident_limit(limit)

    @property
    def capacity(self) -> Optional[int]:
        """Capacity in bytes, or None when unlimited."""
        return self._config_raw()["capacity"] or None

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's counters (see PoolStats), with
        the process's RSS read next to it for comparison."""
        from mempool.stats import PoolStats
        raw = self._stats_raw()
        raw["process_rss_bytes"] = _core.process_rss() or None  # 0: unreadable
        raw["arrow"] = self._arrow.share() if self._arrow is not None else None
        return PoolStats.from_raw(raw)

    def memory_summary(self) -> str:
        """A table of what the pool holds, for people (``str(pool.stats())``):
        live, cached, resident and reserved bytes now and at their peaks, by
        layer, fragmentation, meshing, what went back to the OS, errors."""
        return self.stats().memory_summary()

    def reset_peak(self) -> None:
        """Start the peaks (``peak_live_bytes``, ``peak_resident_bytes``) over
        from the current figures."""
        self._reset_peak()

    def snapshot(self) -> "Snapshot":
        """Every segment and block of the pool now, with the history recorded
        so far (:mod:`mempool.history`): a :class:`mempool.snapshot.Snapshot`,
        whose ``dump(path)`` writes the JSON of docs/snapshot-schema.md."""
        from mempool.snapshot import take
        return take(self)

    # -------------------------------------------------- movable buffers --

    def buffer(self, nbytes: int) -> "_core.Buffer":
        """A movable :class:`mempool.Buffer` of ``nbytes`` bytes (content
        unspecified).  Unlike arrays, whose raw pointers numpy keeps, a
        buffer may be moved by :meth:`defragment` while no view of it is
        alive; ``buf.array(shape, dtype)`` gives a numpy view that pins it.
        Buffers take whole 4 KiB pages (never huge pages, so compaction can
        close holes to the page): use them for large, long-lived data."""
        nbytes = _byte_count("nbytes", nbytes, 0, _SIZE_MAX)
        return _core._buffer_create(self, nbytes)

    def defragment(self) -> DefragReport:
        """Compact the pool's unpinned buffers and give the freed pages back.

        Buffers slide down over the holes before them and move from the
        newest arenas into earlier holes, so free memory ends up in long runs
        and whole arenas that go back to the OS.  Pinned buffers (a view is
        alive) stay where they are; every byte is preserved.  Arrays made by
        numpy through the pool are never moved.  Holds the pool's lock for
        the whole pass (other threads' large allocations wait)."""
        from mempool.stats import DefragReport
        before = self._stats_raw()
        moved = _core._defragment(self)
        after = self._stats_raw()
        return DefragReport(resident_before=before["resident_bytes"],
                            resident_after=after["resident_bytes"],
                            live_bytes=after["live_bytes"], **moved)

    def close(self) -> None:
        """Give all of the pool's memory back to the OS now.

        Raises :class:`mempool.PoolBusy` if blocks are still live (arrays
        alive) or numpy still holds the pool's handler (inside ``use()``, or
        installed).  Closing twice is a no-op.  Any later use of the pool
        raises :class:`mempool.PoolClosed`.
        """
        if self.closed:
            return
        st = self.stats()
        if st.live_bytes > 0:
            raise PoolBusy(
                f"cannot close the pool: {format_bytes(st.live_bytes)} "
                f"({st.live_bytes} bytes) still live in about {st.live_blocks} "
                f"block(s); drop the arrays first", live_bytes=st.live_bytes)
        if self._handler_in_use:
            raise PoolBusy(
                "cannot close the pool: numpy still holds its data-memory "
                "handler (leave mempool.use(), call mempool.uninstall(), or "
                "drop the arrays or contexts that keep it)" if self._arrow is None else
                "cannot close the pool: Arrow uses it (mempool.arrow), and Arrow "
                "keeps its memory pool until the process ends", live_bytes=0)
        if not self._destroy():
            raise PoolBusy(
                "cannot close the pool: another thread started using it "
                "(mempool.use() or a pool constructor) while it was closing",
                live_bytes=0)

    def __repr__(self) -> str:
        if self.closed:
            return "<mempool.Pool closed>"
        st = self.stats()
        return (f"<mempool.Pool live={format_bytes(st.live_bytes)} "
                f"resident={format_bytes(st.resident_bytes)} "
                f"reserved={format_bytes(st.reserved_bytes)} "
                f"capacity={format_bytes(self.capacity)} "
                f"blocks={st.live_blocks}>")

    # --------------------------------------------------------- handler --

    def _on_handler_error(self, code: int, address: int, size: int) -> None:
        """Called by the numpy handler (GIL taken) when numpy handed the
        pool a pointer it does not own.  The core already counted it; warn
        once per pool, because a warning per free would flood a loop.
        Heap corruption (debug mode) warns once per report instead: each one
        names a different block."""
        if code == MP_ECORRUPT:
            self._warn_corruption()
            return
        if not self._claim_warning():   # atomic: once across threads too
            return
        name = ERROR_NAMES.get(code, str(code))
        warnings.warn(
            f"mempool: numpy gave the pool a pointer it cannot free ({name}, "
            f"address 0x{address:x}, numpy's size {size}); it was ignored and "
            f"counted in Pool.stats().errors (further ones are counted "
            f"without a warning)", RuntimeWarning, stacklevel=2)

    def _warn_corruption(self) -> int:
        """Turn the core's pending corruption reports into warnings; return
        how many there were."""
        reports = self._corruption_reports()
        for report in reports:
            warnings.warn(HeapCorruptionWarning(describe_corruption(report), report),
                          stacklevel=3)
        return len(reports)

    def check(self) -> int:
        """Walk the pool's structures; return the number of broken invariants
        (in debug mode, live blocks with a broken canary count, and each is
        also issued as a HeapCorruptionWarning)."""
        bad = super().check()
        self._warn_corruption()
        return bad

    def check_named(self) -> "tuple[int, list[str]]":
        """As :meth:`check`, and also name what broke: returns the number of
        broken invariants and the texts of the first ones found (at most 8,
        e.g. ``"heap: two free neighbours (a missed coalesce)"``)."""
        bad, what = super().check_named()
        self._warn_corruption()
        return bad, what

    def _allocate(self, make: Callable[..., np.ndarray], *args: Any,
                  **kwargs: Any) -> np.ndarray:
        # Make the pool numpy's handler for just this call; numpy then owns
        # the data through the capsule, exactly as under mempool.use().
        capsule = self._handler_capsule()
        _core.take_failure()
        previous = _core.set_handler(capsule)
        try:
            return make(*args, **kwargs)
        except MemoryError as exc:
            code, size = _core.take_failure()
            if code >= 0 or isinstance(exc, PoolExhausted):
                raise
            if code == MP_ENOMEM:
                raise PoolExhausted(size, self.capacity, resident_limit=self.resident_limit,
                                    **self._exhaustion_facts()) from exc
            raise error_from_code(code, size=size) from exc
        finally:
            _core.set_handler(previous)

    def _exhaustion_facts(self) -> Dict[str, Any]:
        """What PoolExhausted reports beyond the request: live bytes, the
        free cache held, the largest hole, each layer's figures, and (with a
        history recording) the top five call sites holding memory.  Allocates
        nothing from the pool."""
        from mempool.snapshot import top_sites
        st = self.stats()
        layers = {name: {"live": l.live_bytes, "in_use": l.in_use_bytes, "free": l.free_bytes,
                         "largest_free": l.largest_free_bytes}
                  for name, l in st.layers.items()}
        return {"live_bytes": st.live_bytes,
                "cached_bytes": st.cached_bytes,
                "largest_free_bytes": st.largest_free_bytes, "layers": layers,
                "top_sites": top_sites(self, 5)}

    # ----------------------------------------------------- constructors --

    def empty(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """Like ``numpy.empty``, with the data in this pool."""
        return self._allocate(np.empty, shape, dtype, order)

    def zeros(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """Like ``numpy.zeros`` (the pool's calloc), with the data in this pool."""
        return self._allocate(np.zeros, shape, dtype, order)

    def ones(self, shape: Any, dtype: Any = None, order: str = "C") -> np.ndarray:
        """Like ``numpy.ones``, with the data in this pool."""
        return self._allocate(np.ones, shape, dtype, order)

    def full(self, shape: Any, fill_value: Any, dtype: Any = None,
             order: str = "C") -> np.ndarray:
        """Like ``numpy.full``, with the data in this pool."""
        return self._allocate(np.full, shape, fill_value, dtype, order)

    def empty_like(self, prototype: Any, dtype: Any = None, order: str = "K",
                   subok: bool = True, shape: Any = None) -> np.ndarray:
        """Like ``numpy.empty_like``, with the data in this pool."""
        return self._allocate(np.empty_like, prototype, dtype, order, subok, shape)

    def zeros_like(self, prototype: Any, dtype: Any = None, order: str = "K",
                   subok: bool = True, shape: Any = None) -> np.ndarray:
        """Like ``numpy.zeros_like``, with the data in this pool."""
        return self._allocate(np.zeros_like, prototype, dtype, order, subok, shape)

    def asarray(self, a: Any, dtype: Any = None, order: Optional[str] = None) -> np.ndarray:
        """Copy ``a`` into a new array whose data lives in this pool (always a
        copy, even when ``a`` already is one of the pool's arrays)."""
        return self._allocate(np.array, a, dtype=dtype, copy=True,
                              order="K" if order is None else order)
