"""mempool: a pool allocator for the memory behind numpy arrays.

Three ways to use it, from narrow to wide::

    pool = mempool.Pool()
    a = pool.empty((1024, 1024))          # one array from the pool

    with mempool.use(pool):               # every numpy array made in the block
        b = np.ones(1000) * 2

    mempool.install()                     # the whole process, new threads too

or, without touching the code: ``python -m mempool run script.py``.

numpy keeps its data-memory handler (NEP 49) in a context variable: ``use()``
changes it for the current thread or asyncio task only, exactly like
``numpy``'s own API; ``install()`` changes it for the calling thread and, by
wrapping ``threading.Thread._bootstrap_inner``, for every thread started
afterwards (threads already running keep their handler); see
:mod:`mempool.dropin`.
"""
from __future__ import annotations

from mempool import _core
from mempool.dropin import (default_pool, handler_name, install, installed,
                            pool_of, uninstall, use)
from mempool.errors import (DoubleFree, ForeignPointer, HeapCorruption,
                            HeapCorruptionWarning, InteriorPointer,
                            InvalidAlignment, InvalidArgument, MempoolError,
                            PoolBusy, PoolClosed, PoolExhausted, SettingWarning,
                            SizeMismatch, SizeOverflow, error_from_code)
from mempool.pool import Pool

Buffer = _core.Buffer

__all__ = [
    "Pool", "Buffer", "DefragReport", "PoolStats", "SizeClassStats", "default_pool", "use", "install",
    "uninstall", "installed", "handler_name", "pool_of", "MempoolError", "PoolExhausted",
    "InvalidArgument", "DoubleFree", "ForeignPointer", "InteriorPointer",
    "SizeMismatch", "SizeOverflow", "InvalidAlignment", "PoolBusy",
    "PoolClosed", "HeapCorruption", "HeapCorruptionWarning", "SettingWarning",
    "error_from_code",
]

__version__ = "0.1.0"


# Loaded on first use, to keep `import mempool` (and `python -m mempool run`,
# and a start-up install) cheap: mempool.trace (record(): allocation traces;
# json, gzip) and the stats dataclasses.
_LAZY = {"trace": "mempool.trace", "PoolStats": "mempool.stats",
         "SizeClassStats": "mempool.stats", "DefragReport": "mempool.stats"}


def __getattr__(name: str):
    """Import the lazily loaded names of the package on first access."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mempool' has no attribute {name!r}")
    import importlib
    module = importlib.import_module(module_name)
    value = module if module_name == f"mempool.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
