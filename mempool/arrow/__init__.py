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

from typing import Any, Dict, Optional

from mempool.arrow import _install
from mempool.arrow._build import ArrowAdapterError, ArrowVersionMismatch
from mempool.arrow._install import (available, install_when_imported, installed, pending,
                                    require_pyarrow, uninstall)

__all__ = ["available", "require_pyarrow", "memory_pool", "install", "uninstall", "installed",
           "share", "default_backend_stats", "install_when_imported", "pending",
           "ArrowAdapterError", "ArrowVersionMismatch"]


def _resolve(pool: Any) -> Any:
    from mempool import dropin
    from mempool.pool import Pool
    if pool is None:
        return dropin.installed() or dropin.default_pool()
    if not isinstance(pool, Pool):
        raise TypeError(f"expected a mempool.Pool or None, got {pool!r}")
    return pool


def memory_pool(pool: Any = None) -> Any:
    """A ``pyarrow.MemoryPool`` whose buffers live in ``pool`` (default: the
    installed pool, else :func:`mempool.default_pool`).  The same object for
    the same pool; pass it as ``memory_pool=`` to pyarrow functions, or use
    :func:`install` to make it Arrow's default.  Its ``backend_name`` is
    "mempool"; its counters (``bytes_allocated()``, ``max_memory()``, ...)
    are Arrow's share of the pool, also in ``pool.stats().arrow``.

    A refusal (capacity or resident limit) is Arrow's OutOfMemory status
    (``pyarrow.ArrowMemoryError``, a MemoryError) naming the figures."""
    return _install.adapter(_resolve(pool)).arrow_pool


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
    return _install.install(_resolve(pool), redirect=redirect)


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
