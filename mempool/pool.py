"""``mempool.Pool``: argument policy, array constructors and reporting on top
of the native pool object from :mod:`mempool._core`.

Arrays made by a pool's constructors (and every array numpy allocates inside
``mempool.use(pool)``) get their data from the pool through numpy's NEP 49
handler.  numpy keeps the handler capsule in each such array, and the capsule
keeps the pool object alive, so an array never outlives the memory under it.
"""
from __future__ import annotations

import numbers
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import numpy as np

from mempool import _core, _settings
from mempool.errors import (CODES, ERROR_NAMES, MP_ECORRUPT, MP_ENOMEM,
                            HeapCorruptionWarning, InvalidArgument, MempoolError, PoolBusy,
                            PoolClosed, PoolExhausted, describe_corruption, error_from_code,
                            format_bytes)

if TYPE_CHECKING:  # imported on first use: the dataclasses cost ~5 ms at import
    from mempool.stats import DefragReport, PoolStats

__all__ = ["Pool"]

MP_ESIZE = CODES["MP_ESIZE"]

_SIZE_MAX = 2 ** 64 - 1


def _byte_count(name: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int number of bytes, got {value!r}")
    value = int(value)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum} "
                         f"bytes, got {value!r}")
    return value


class _SettingProperty:
    """``pool.<setting>``: reads the pool's setting (in its Python form);
    sets it through the core (mp_pool_set) when the table says it may
    change at run time, and otherwise says it is fixed at creation."""

    def __init__(self, setting: _settings.Setting) -> None:
        self.setting = setting
        self.__doc__ = (f"{setting.doc} ({setting.unit}; "
                        f"{'settable' if setting.runtime else 'fixed when the pool is made'}).")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, pool: Any, owner: Any = None) -> Any:
        if pool is None:
            return self
        return _settings.to_python(self.setting, pool._config_raw()[self.setting.name])

    def __set__(self, pool: Any, value: Any) -> None:
        s = self.setting
        if not s.runtime:
            raise AttributeError(f"{s.key} is fixed when the pool is made: make a new "
                                 f"Pool({s.key}=...) (settable at run time: "
                                 f"{', '.join(k for k, r in _settings.SETTINGS.items() if r.runtime)})")
        pool._set_setting(s.name, _settings.to_core(s, value))
        pool._requested[s.key] = value
        environ = sys.modules.get("mempool._environ")   # loaded once install() exported
        if environ is not None:   # installed: processes started later get the new value
            environ.reexport(pool)


class _Signature:
    """``Pool.__signature__``: one keyword argument per setting, so help()
    and inspect.signature(Pool) list them all; built on first use (inspect
    would add milliseconds to ``import mempool``)."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        import inspect
        P = inspect.Parameter
        params = [P("capacity", P.POSITIONAL_OR_KEYWORD, default=None)]
        params += [P(k, P.KEYWORD_ONLY, default=None) for k in _settings.SETTINGS
                   if k != "capacity"]
        return inspect.Signature(params)


class Pool(_core._PoolBase):
    """A memory pool for numpy arrays.

    ``Pool(capacity=None, *, small_max=None, arena_bytes=None, ...)`` takes
    one keyword argument per row of the core's settings table (README
    "Settings"; ``inspect.signature(Pool)`` lists them, ``pool.config``
    shows the values in use).  None means the default.  Sizes are ints or
    strings (``"2GiB"``, ``"512MB"``), durations seconds or strings
    (``"250ms"``, ``math.inf``: never); ``resident_limit="auto"`` is the
    cgroup or Dask limit, less what the process holds outside the pool when
    the pool is made.  ``debug=None`` follows ``MEMPOOL_DEBUG``.  A wrong
    type is a TypeError, a value out of range an
    :class:`mempool.InvalidArgument` (a ValueError) naming the setting, the
    value and the allowed range.

    Each setting is also an attribute: ``pool.decay = 0.25`` changes a
    setting the table marks as changeable at run time (decay,
    background_purge, retain_arenas, resident_limit); the others are fixed
    when the pool is made.  A pool takes no other attribute, so a typo
    (``pool.resident_limt = ...``) is an AttributeError, not a no-op.

    Arrays allocated by the pool keep it alive.  :meth:`close` frees the pool
    at once (only when nothing is live); otherwise it is freed when the last
    reference (pool object or array) goes away.

    numpy's free cannot fail, so a pointer numpy hands back that the pool
    does not own (double free, foreign or interior pointer) is ignored,
    counted in ``stats().errors``, and reported by a ``RuntimeWarning`` issued
    at once from inside the handler (it takes the GIL with PyGILState_Ensure),
    once per pool; if warnings are errors it goes to ``sys.unraisablehook``.
    Meshing (``mesh=True``) and debug mode: see the README's sections.
    """

    __slots__ = ("_arrow", "_requested")

    # How _core raises: it imports no Python module of the package.
    _error_from_code = staticmethod(error_from_code)
    _PoolClosed = PoolClosed
    _InvalidSetting = InvalidArgument

    __signature__ = _Signature()   # (capacity=None, *, <one keyword per setting>)

    def __init__(self, capacity: Any = None, **settings: Any) -> None:
        """Make a pool: ``capacity`` and one keyword per setting (each
        optional, None: the default; ``inspect.signature(Pool)`` lists them,
        and each attribute of the same name says what it does).  An unknown
        keyword is a TypeError naming the nearest setting."""
        self._setup({"capacity": capacity, **settings})

    def _setup(self, settings: Dict[str, Any]) -> None:
        """__init__'s body: check every setting, then make the native pool."""
        self._arrow: Any = None  # mempool.arrow's adapter, once Arrow has used the pool
        self._requested = {k: v for k, v in settings.items() if v is not None}
        self._open(_settings.resolve(settings))

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except AttributeError:
            if hasattr(type(self), name):
                raise
            import difflib
            near = difflib.get_close_matches(name, _settings.SETTINGS, n=1)
            raise AttributeError(
                f"mempool.Pool has no setting or attribute {name!r}"
                + (f" (did you mean {near[0]!r}?)" if near else "")) from None

    # ------------------------------------------------------------ state --

    for _key, _row in _settings.SETTINGS.items():
        locals()[_key] = _SettingProperty(_row)
    del _key, _row

    @property
    def config(self) -> Dict[str, Any]:
        """The settings the pool runs with (after defaults, rounding and
        changes), one per row of the settings table, in Python form: sizes
        in bytes (None: unlimited / no limit), decay in seconds (math.inf:
        only on trim()), flags as bools, huge_pages as its word."""
        raw = self._config_raw()
        return {k: _settings.to_python(s, raw[s.name]) for k, s in _settings.SETTINGS.items()}

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's counters (see PoolStats), with
        the process's RSS read next to it for comparison."""
        from mempool.stats import PoolStats
        raw = self._stats_raw()
        raw["process_rss_bytes"] = _core.process_rss() or None  # 0: unreadable
        raw["arrow"] = self._arrow.share() if self._arrow is not None else None
        return PoolStats.from_raw(raw)

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
            refusal = self._refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc
        finally:
            _core.set_handler(previous)

    def _refusal(self, exc: BaseException, detail: str = "") -> Optional[MempoolError]:
        """The pool's own error for the MemoryError numpy raised when this
        pool refused its request (None when the pool did not refuse one):
        a :class:`PoolExhausted` with the figures when out of capacity, of
        the resident limit or of address space, the core's error otherwise."""
        code, size, native = _core.take_failure()
        if code >= 0 or native != self._native_id or isinstance(exc, MempoolError):
            return None
        if code in (MP_ENOMEM, MP_ESIZE):      # ESIZE: larger than any block can be
            cfg = self.config
            what = None if code == MP_ENOMEM else \
                "request larger than any block a pool can hold (the address space is 48 bits)"
            return PoolExhausted(size, cfg["capacity"], self.stats().live_bytes, pool=self,
                                 resident_limit=cfg["resident_limit"], what=what,
                                 detail=detail)
        return error_from_code(code, size=size)

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
