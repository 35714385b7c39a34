"""The mechanics of :mod:`mempool.arrow` on explicit pools: the adapters
(one per pool, never freed), making a pool Arrow's default and undoing it,
and the install that waits for the program to import pyarrow.  It imports
nothing of the package above it, so :mod:`mempool.dropin` can use it (the
facade, :mod:`mempool.arrow`, resolves default pools through the drop-in).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
import warnings
from typing import Any, Dict, Optional

from mempool.arrow._build import ArrowAdapterError

__all__ = ["available", "require_pyarrow", "install", "uninstall", "installed",
           "install_when_imported", "pending", "adapter"]

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


def adapter(pool: Any) -> Any:
    """The (one, never freed) adapter of ``pool``, built and loaded on first use."""
    with _lock:
        adapter = _adapters.get(id(pool))
        if adapter is None:
            from mempool.arrow import _build
            module = _build.load()
            adapter = module.Adapter(pool._handler_capsule(), _report(pool))
            _adapters[id(pool)] = adapter
            pool._arrow = adapter
        return adapter


def install(pool: Any, *, redirect: bool = True) -> Any:
    """:func:`mempool.arrow.install` on an explicit pool (see there)."""
    global _installed, _previous
    with _lock:
        adapter_ = adapter(pool)
        import pyarrow
        if _installed is None:
            _previous = pyarrow.default_memory_pool()   # pyarrow's own default
        try:
            if redirect:
                adapter_.redirect_default()
        except RuntimeError as exc:
            warnings.warn(f"mempool: Arrow's C++ default pool could not be redirected "
                          f"({exc}); only pyarrow's default (pyarrow.set_memory_pool) "
                          f"allocates from the pool", RuntimeWarning, stacklevel=2)
        pyarrow.set_memory_pool(adapter_.arrow_pool)
        _installed = pool
        return adapter_.arrow_pool


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
        _pending = pool
        if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _ImportHook())


def pending() -> Optional[Any]:
    """The pool waiting for pyarrow's import, or None."""
    return _pending
