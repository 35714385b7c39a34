"""The drop-in: which pool numpy allocates from.

numpy keeps its data-memory handler (NEP 49) in a context variable: ``use()``
changes it for the current thread or asyncio task only, exactly like
``numpy``'s own API; ``install()`` changes it for the calling thread and, by
wrapping ``threading.Thread._bootstrap_inner``, for every thread started
afterwards (threads already running keep their handler).  Re-exported by
:mod:`mempool`.
"""
from __future__ import annotations

import contextlib
import _thread
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np

if TYPE_CHECKING:
    import threading

from mempool import _core, _settings
from mempool.pool import Pool

__all__ = ["default_pool", "use", "install", "uninstall", "installed", "handler_name",
           "pool_of"]

_lock = _thread.RLock()   # not threading's: install() imports it (import cost)
_default: Optional[Pool] = None
# install() state: the pool, its capsule (held so new threads can be given
# it, and so the pool cannot be closed while installed) and the handler that
# was current before, for uninstall().
_installed: Optional[Pool] = None
_installed_capsule: Any = None
_previous_handler: Any = None


def default_pool() -> Pool:
    """The process-wide pool: the one ``MEMPOOL_INSTALL=1`` or ``python -m
    mempool run`` installed, else one created with default settings on
    first use (and again if it was closed)."""
    global _default
    with _lock:
        if _default is None or _default.closed:
            _default = Pool()
        return _default


def _set_default(pool: Pool) -> None:
    """Make ``pool`` the default pool (the start-up install and ``run``)."""
    global _default
    with _lock:
        _default = pool


def _resolve(pool: Optional[Pool]) -> Pool:
    if pool is None:
        return default_pool()
    if not isinstance(pool, Pool):
        raise TypeError(f"expected a mempool.Pool or None, got {pool!r}")
    return pool


@contextlib.contextmanager
def use(pool: Optional[Pool] = None) -> Iterator[Pool]:
    """Make ``pool`` (default: :func:`default_pool`) numpy's data-memory
    handler inside the ``with`` block, for the current thread or asyncio task
    only; the previous handler comes back on exit.  Blocks nest.  Arrays made
    inside stay valid after the block and are freed through the pool."""
    pool = _resolve(pool)
    previous = _core.set_handler(pool._handler_capsule())
    _core.take_failure()
    try:
        yield pool
    except MemoryError as exc:
        # numpy turns the pool's refusal into a bare MemoryError: say which
        # pool refused and its figures (a PoolExhausted, so both `except
        # MemoryError` and `except mempool.PoolExhausted` catch it)
        refusal = pool._refusal(exc, detail="inside mempool.use()")
        if refusal is None:
            raise
        raise refusal from exc
    finally:
        _core.set_handler(previous)


def _thread_hook(bootstrap_inner: Callable[[threading.Thread], None]):
    def _bootstrap_inner(self: threading.Thread) -> None:
        capsule = _installed_capsule
        # A thread that inherited its starter's context (free-threaded 3.14+:
        # sys.flags.thread_inherit_context) keeps a handler chosen there, as
        # a use() block's; a fresh context has numpy's default.
        if capsule is not None and handler_name() == "default_allocator":
            _core.set_handler(capsule)
        return bootstrap_inner(self)
    _bootstrap_inner.__mempool_original__ = bootstrap_inner  # type: ignore[attr-defined]
    return _bootstrap_inner


def install(pool: Optional[Pool] = None, *, arrow: bool = False) -> Pool:
    """Make ``pool`` (default: :func:`default_pool`) numpy's handler for the
    calling thread and for every thread started from now on; with
    ``arrow=True`` also Arrow's default memory pool (pandas 3 strings,
    Parquet data, ``to_pandas()``: :mod:`mempool.arrow`), at once if pyarrow
    is imported, else when the program imports it.

    New threads start with numpy's default handler (its ContextVar is empty
    in a new thread), so ``threading.Thread._bootstrap_inner`` is wrapped to
    set the handler first, as NumPy's test harness does.  Threads already
    running are not changed.  Installing again replaces the pool; the
    handler current before the first install is what :func:`uninstall`
    restores.  Returns the installed pool.

    It also sets ``MEMPOOL_INSTALL=1`` and the pool's settings
    (``MEMPOOL_CAPACITY``, ...) in ``os.environ``, so processes started from
    now on (spawn and forkserver children, subprocesses) install an equal
    pool at start-up (see :mod:`mempool._startup`).
    """
    global _installed, _installed_capsule, _previous_handler
    import threading
    pool = _resolve(pool)
    if arrow:
        from mempool.arrow import _install as arrow_install
        arrow_install.require_pyarrow()   # before anything changes
    with _lock:
        capsule = pool._handler_capsule()
        previous = _core.set_handler(capsule)
        if _installed is None:
            _previous_handler = previous
        _installed, _installed_capsule = pool, capsule
        current = threading.Thread._bootstrap_inner
        if not hasattr(current, "__mempool_original__"):
            threading.Thread._bootstrap_inner = _thread_hook(current)  # type: ignore[method-assign]
        from mempool import _environ          # on use: not at `import mempool`
        _environ.export_environ(pool)
        if arrow:
            _install_arrow(pool)
    return pool


def _install_arrow(pool: Pool) -> None:
    """install(arrow=True): Arrow's default pool too, and MEMPOOL_ARROW=1 for
    processes started from now on."""
    import os

    from mempool.arrow import _install as arrow_install
    arrow_install.install_when_imported(pool)
    os.environ[_ARROW_VAR] = "1"


def _uninstall_arrow() -> None:
    import os
    import sys
    os.environ.pop(_ARROW_VAR, None)
    arrow_install = sys.modules.get("mempool.arrow._install")
    if arrow_install is not None:
        arrow_install.uninstall()


_ARROW_VAR = _settings.OPTIONS["arrow"].env   # MEMPOOL_ARROW


def uninstall() -> Optional[Pool]:
    """Undo :func:`install`: restore the previous handler in the calling
    thread (call it from the thread that installed) and stop giving the pool
    to new threads and new processes (``MEMPOOL_INSTALL`` is removed from
    ``os.environ``); Arrow's default pool goes back to Arrow's own when
    ``install(arrow=True)`` made it the pool.  Returns the pool that was
    installed, or None."""
    global _installed, _installed_capsule, _previous_handler
    import threading
    with _lock:
        pool = _installed
        if pool is None:
            return None
        _core.set_handler(_previous_handler)
        _installed = _installed_capsule = _previous_handler = None
        current = threading.Thread._bootstrap_inner
        original = getattr(current, "__mempool_original__", None)
        if original is not None:
            threading.Thread._bootstrap_inner = original  # type: ignore[method-assign]
        from mempool import _environ
        _environ.clear_environ()
        _uninstall_arrow()
    return pool


def installed() -> Optional[Pool]:
    """The pool set by :func:`install`, or None."""
    return _installed


def pool_of(arr: Any) -> Optional[Pool]:
    """The pool holding the data of ``arr`` (an array or a view of one,
    through ``.base``; a :class:`mempool.Buffer`'s arrays too), or None when
    numpy's own allocator (or another) holds it."""
    seen = 0
    while arr is not None and seen < 10_000:   # a .base chain ends; bound it anyway
        if isinstance(arr, _core.Buffer):
            return arr.pool
        if isinstance(arr, memoryview):
            arr = arr.obj
            continue
        if isinstance(arr, np.ndarray):
            pool = _core.array_pool(arr)
            if pool is not None:
                return pool
        arr = getattr(arr, "base", None)
        seen += 1
    return None


def handler_name(arr: Any = None) -> Optional[str]:
    """numpy's handler name for ``arr`` ("mempool" for pool arrays; None
    when the array does not own its data), or of the current context."""
    from numpy._core.multiarray import get_handler_name
    return get_handler_name() if arr is None else get_handler_name(arr)
