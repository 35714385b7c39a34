"""Arrow's buffers in a mempool pool: pandas 3 strings, Parquet data,
``Table.to_pandas()``, compute kernels.

    import mempool, mempool.arrow
    pa_pool = mempool.arrow.memory_pool()        # a pyarrow.MemoryPool on the default pool
    table = pyarrow.parquet.read_table(path, memory_pool=pa_pool)

    mempool.install(arrow=True)                  # numpy *and* Arrow, process-wide

:func:`install` makes a pool Arrow's default in two ways, because pyarrow's
``set_memory_pool`` alone does not reach Arrow's C++ code paths that call
``arrow::default_memory_pool()`` themselves (Parquet's reader and writer
buffers, some compute kernels: 40 MB of a 200k-row ``to_parquet`` went
there, measured with pyarrow 26): it calls ``pyarrow.set_memory_pool`` and
redirects ``arrow::default_memory_pool()`` itself (see adapter.h).  Blocks
Arrow's own backend handed out before go back to it.

Importing this module does not import pyarrow; the adapter (a small C++
extension) is built against the installed pyarrow the first time it is
needed (see :mod:`mempool.arrow._build`), or ahead of time with
``python -m mempool.arrow build``.

A pool handed to Arrow stays alive until the process ends: Arrow keeps raw
pointers to its memory pool in every buffer (and pyarrow does not keep pool
objects alive), so it can never be closed; ``trim()`` still gives its free
pages back.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
import warnings
from typing import Any, Dict, Optional

from mempool.arrow._build import ArrowAdapterError, ArrowVersionMismatch

__all__ = ["available", "require_pyarrow", "memory_pool", "install", "uninstall", "installed",
           "share", "default_backend_stats", "ArrowAdapterError", "ArrowVersionMismatch"]

_lock = threading.RLock()
# id(pool) -> adapter; adapters (and so their pools) live until the process ends
_adapters: Dict[int, Any] = {}
_installed: Any = None          # the mempool.Pool that is Arrow's default
_previous: Any = None           # pyarrow's default before install()
_pending: Any = None            # a pool waiting for pyarrow's import (install_when_imported)


def available() -> bool:
    """True when pyarrow can be imported here (without importing it)."""
    if "pyarrow" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("pyarrow") is not None
    except (ImportError, ValueError):
        return False


def require_pyarrow() -> None:
    """An :class:`ArrowAdapterError` saying what to install when pyarrow
    is not importable here."""
    if not available():
        raise ArrowAdapterError("mempool: Arrow support needs pyarrow, which is not "
                                "installed: pip install 'mempool[arrow]'")


def _resolve(pool: Any) -> Any:
    import mempool
    if pool is None:
        return mempool.installed() or mempool.default_pool()
    if not isinstance(pool, mempool.Pool):
        raise TypeError(f"expected a mempool.Pool or None, got {pool!r}")
    return pool


def _report(pool: Any):
    def report(code: int, address: int, size: int) -> None:
        from mempool.errors import ERROR_NAMES, MP_ECORRUPT
        if code == MP_ECORRUPT:
            pool._warn_corruption()
            return
        warnings.warn(
            f"mempool: Arrow handed the pool a pointer it cannot free or resize "
            f"({ERROR_NAMES.get(code, code)}, address 0x{address:x}, Arrow's size {size}); "
            f"it was ignored and counted in Pool.stats().arrow.errors (further ones are "
            f"counted without a warning)", RuntimeWarning, stacklevel=2)
    return report


def _adapter(pool: Any) -> Any:
    with _lock:
        adapter = _adapters.get(id(pool))
        if adapter is None:
            from mempool.arrow import _build
            module = _build.load()
            adapter = module.Adapter(pool._handler_capsule(), _report(pool))
            _adapters[id(pool)] = adapter
            pool._arrow = adapter
        return adapter


def memory_pool(pool: Any = None) -> Any:
    """A ``pyarrow.MemoryPool`` whose buffers live in ``pool`` (default: the
    installed pool, else :func:`mempool.default_pool`).  The same object for
    the same pool; pass it as ``memory_pool=`` to pyarrow functions, or use
    :func:`install` to make it Arrow's default.  Its ``backend_name`` is
    "mempool"; its counters (``bytes_allocated()``, ``max_memory()``, ...)
    are Arrow's share of the pool, also in ``pool.stats().arrow``.

    A refusal (capacity or resident limit) is Arrow's OutOfMemory status
    (``pyarrow.ArrowMemoryError``, a MemoryError) naming the figures."""
    return _adapter(_resolve(pool)).arrow_pool


def install(pool: Any = None, *, redirect: bool = True) -> Any:
    """Make ``pool`` (default: the installed pool, else the default pool)
    Arrow's default memory pool in this process: ``pyarrow.set_memory_pool``
    and (``redirect``) the redirect of ``arrow::default_memory_pool()``,
    the object pyarrow also returns as its named default backend
    (``pa.mimalloc_memory_pool()`` unless ARROW_DEFAULT_MEMORY_POOL chose
    another), which then reports ``backend_name`` "mempool".  Without the
    redirect, Arrow's C++ paths that take no pool (Parquet's reader and
    writer buffers, some kernels) stay in Arrow's own allocator.  Returns the
    ``pyarrow.MemoryPool``.  Imports pyarrow (and builds the adapter the
    first time); :func:`mempool.install` with ``arrow=True`` waits for the
    program to import pyarrow instead."""
    global _installed, _previous
    pool = _resolve(pool)
    with _lock:
        adapter = _adapter(pool)
        import pyarrow
        if _installed is None:
            _previous = pyarrow.default_memory_pool()   # pyarrow's own default
        try:
            if redirect:
                adapter.redirect_default()
        except RuntimeError as exc:
            warnings.warn(f"mempool: Arrow's C++ default pool could not be redirected "
                          f"({exc}); only pyarrow's default (pyarrow.set_memory_pool) "
                          f"allocates from the pool", RuntimeWarning, stacklevel=2)
        pyarrow.set_memory_pool(adapter.arrow_pool)
        _installed = pool
        return adapter.arrow_pool


def uninstall() -> Optional[Any]:
    """Undo :func:`install` (and a pending :func:`install_when_imported`):
    Arrow allocates from its own default backend again; buffers already in
    the pool go back to it when Arrow frees them.  Returns the pool that was
    installed, or None."""
    global _installed, _pending, _previous
    with _lock:
        _pending = None
        pool, _installed = _installed, None
        if pool is None:
            return None
        sys.modules["mempool.arrow._adapter"].unredirect_default()
        import pyarrow
        pyarrow.set_memory_pool(_previous)
        _previous = None
        return pool


def installed() -> Optional[Any]:
    """The pool that is Arrow's default (via :func:`install`), or None."""
    return _installed


def share(pool: Any = None) -> Optional[Dict[str, int]]:
    """Arrow's share of ``pool`` (its counters), or None if Arrow never
    used it.  The same figures are in ``pool.stats().arrow``."""
    adapter = getattr(_resolve(pool), "_arrow", None)
    return None if adapter is None else adapter.share()


def default_backend_stats() -> Dict[str, Any]:
    """Counters of Arrow's own default backend (mimalloc, jemalloc or
    system): what it allocated itself, not what went to mempool.  After
    :func:`install`, ``bytes_allocated`` stays at what it held before and
    ``num_allocations`` stops growing.  Builds/loads the adapter."""
    from mempool.arrow import _build
    return _build.load().default_backend_stats()


# ------------------------------------------------ install on pyarrow import --

class _ImportHook(importlib.abc.MetaPathFinder):
    """Installs the pending pool once the program has imported pyarrow (so
    ``mempool.install(arrow=True)`` and ``MEMPOOL_ARROW=1`` cost nothing in
    a process that never uses Arrow)."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "pyarrow" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec.loader = _LoaderThenInstall(spec.loader)
        return spec


class _LoaderThenInstall(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _install_pending()


def _install_pending() -> None:
    global _pending
    with _lock:
        pool, _pending = _pending, None
    if pool is None:
        return
    try:
        install(pool)
    except Exception as exc:   # never break the program's import of pyarrow
        print(f"mempool: Arrow not put in the pool: {exc}", file=sys.stderr)


def install_when_imported(pool: Any) -> None:
    """:func:`install` ``pool`` now if pyarrow is imported, else as soon as
    the program imports it (nothing happens in a process that never does).
    Without pyarrow installed this is an :class:`ArrowAdapterError`."""
    global _pending
    if "pyarrow" in sys.modules:
        install(pool)
        return
    require_pyarrow()
    with _lock:
        _pending = _resolve(pool)
        if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _ImportHook())


def pending() -> Optional[Any]:
    """The pool waiting for pyarrow's import, or None."""
    return _pending
