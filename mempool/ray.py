"""mempool on Ray workers.

Two routes, both per worker process:

- the setup hook: ``ray.init(runtime_env=mempool.ray.runtime_env(capacity=...))``,
  which is ``{"worker_process_setup_hook": "mempool.ray.setup", "env_vars":
  {MEMPOOL_* settings}}``: Ray calls :func:`setup` in every worker process
  it starts, before the worker runs a task; it installs a pool built from the
  ``MEMPOOL_*`` variables in the worker's main thread (where Ray runs plain
  tasks) and in every thread started later (threaded and async actors);
- the environment: ``runtime_env={"env_vars": {"MEMPOOL_INSTALL": "1", ...}}``
  makes the start-up hook (mempool-startup.pth) install the pool when the
  worker's interpreter starts (mempool must be pip-installed on the nodes).

Both reach plain tasks (Ray runs them in the worker's main thread) and the
methods of ordinary actors, and every Python thread those start.  Threaded
actors (``max_concurrency > 1``) and async actors run their methods on
threads Ray's C++ core starts (or in asyncio tasks created from them): those
carry an empty context, which no Python hook sees, so their methods need
:func:`pooled` (``@mempool.ray.pooled`` under ``@ray.method`` or on the
method itself).

Ray itself is not imported here.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict

import mempool
from mempool import _startup

__all__ = ["setup", "runtime_env", "pooled"]


def setup() -> mempool.Pool:
    """Ray's ``worker_process_setup_hook``: install a pool built from the
    ``MEMPOOL_*`` settings of this process (none: the defaults).  A
    malformed variable raises a ValueError naming it and its value (Ray
    then reports the worker's setup as failed); nothing is installed.
    Installing twice (the .pth already did it) keeps the first pool."""
    settings = _startup.settings_from_environ()
    current = mempool.installed()
    if current is not None:
        return current
    return _startup.install_pool(settings, arrow=_startup.arrow_from_environ(warn_missing=True))


def runtime_env(*, arrow: bool = False, **pool_settings: Any) -> Dict[str, Any]:
    """A Ray ``runtime_env`` dict that installs mempool with these Pool
    settings (one keyword per row of the settings table, as ``Pool``'s;
    sizes and durations may be strings) in every worker through
    :func:`setup`; merge it with your own.  ``arrow=True`` puts Arrow's
    buffers in the workers' pools too (``MEMPOOL_ARROW=1``,
    :mod:`mempool.arrow`).  An unknown setting is a TypeError naming the
    nearest, and a bad value (``capacity=1``: below the 2 MiB minimum) a
    ValueError or TypeError naming it, raised here on the driver."""
    env_vars = _startup.environ_from_settings(pool_settings, "runtime_env()")  # checks each
    if arrow:
        from mempool._settings import OPTIONS
        env_vars[OPTIONS["arrow"].env] = "1"
    return {"worker_process_setup_hook": "mempool.ray.setup", "env_vars": env_vars}


def pooled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` (a function or coroutine function, e.g. a threaded or
    async actor's method) with the installed pool as numpy's handler, for
    threads Ray starts outside Python.  Without an installed pool the
    default pool is used (and installed by :func:`setup` on first call)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with mempool.use(mempool.installed() or setup()):
                return await fn(*args, **kwargs)
        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with mempool.use(mempool.installed() or setup()):
            return fn(*args, **kwargs)
    return run
