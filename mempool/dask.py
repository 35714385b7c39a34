"""mempool on Dask workers: ``client.register_plugin(MempoolPlugin(...))``.

Why installing in ``setup`` is not enough: numpy keeps its handler in a
ContextVar, and a worker runs each task in a copy of the context of the
asyncio task that executes it (``run_in_executor_with_context``), a context
descended from the worker's event loop, not from the executor thread.  So
the plugin, on each worker:

- sets the loop's task factory so that every asyncio task created from
  then on (the worker's ``execute`` tasks among them) starts with the pool
  as numpy's handler; the executor jobs copy that context, so every task of
  every executor thread allocates from the pool (coroutine tasks too);
- calls :func:`mempool.install` (the plugin's own context, threads the task
  code starts, and ``MEMPOOL_INSTALL`` for the worker's subprocesses);
- adds ``mempool_*`` metrics to the worker's heartbeat metrics (they reach
  the scheduler and the dashboard's workers table) and a prometheus_client
  collector to the worker's ``/metrics``;
- runs a guard every ``guard_interval`` seconds: when the process's RSS
  passes ``guard_fraction`` of the spill threshold (``spill`` fraction of
  ``memory_limit``), the pool gives its cached free pages back
  (``pool.trim()``) before Dask starts spilling, pausing or killing.

The scheduler hands registered plugins to every worker that joins later,
restarted ones included.  Without the plugin, setting ``MEMPOOL_INSTALL=1``
in the nanny's environment (``distributed.nanny.environ``) installs the pool
in every worker process at interpreter start, which every context copies.

distributed and prometheus_client are imported only when this module is
(``pip install mempool[dask]``).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any, Dict, Optional

from distributed.diagnostics.plugin import WorkerPlugin

import mempool
from mempool import _core, _settings

__all__ = ["MempoolPlugin", "trim", "worker_pool", "METRICS"]

logger = logging.getLogger("mempool.dask")

# metric name -> (PoolStats attribute, help text, prometheus kind)
METRICS = {
    "mempool_live_bytes": ("live_bytes", "Bytes of live numpy data in the pool", "gauge"),
    "mempool_resident_bytes": ("resident_bytes", "Pool pages resident in RAM", "gauge"),
    "mempool_reserved_bytes": ("reserved_bytes", "Address space the pool holds", "gauge"),
    "mempool_peak_live_bytes": ("peak_live_bytes", "Highest live bytes seen", "gauge"),
    "mempool_fragmentation": ("fragmentation", "Share of pool resident memory neither live "
                              "nor cache that decay/trim returns (0 = none; idle pool: 0)",
                              "gauge"),
    "mempool_released_bytes": ("released_bytes", "Bytes given back to the OS so far", "counter"),
}

_STATS_TTL = 0.5   # seconds one stats snapshot serves all metrics of a heartbeat


def _guard_threshold(worker: Any, fraction: float) -> Optional[int]:
    """Bytes of RSS at which the guard trims: ``fraction`` of the worker's
    spill threshold (or of its pause/terminate threshold, or memory_limit,
    when spilling is off); None when the worker has no memory limit."""
    mm = getattr(worker, "memory_manager", None)
    limit = getattr(mm, "memory_limit", None)
    if not limit:
        return None
    first = next((f for f in (getattr(mm, "memory_spill_fraction", False),
                              getattr(mm, "memory_target_fraction", False),
                              getattr(mm, "memory_pause_fraction", False)) if f), 1.0)
    return int(limit * first * fraction)


class MempoolPlugin(WorkerPlugin):
    """Put every task of every worker thread on a mempool pool.

    ``MempoolPlugin(**pool_settings)`` takes :class:`mempool.Pool`'s keyword
    arguments, one per row of the settings table (listed below; sizes and
    durations may be strings: ``capacity="2GiB"``, ``decay="250ms"``); an
    unknown one is a TypeError naming the nearest, and a bad value a
    ValueError/TypeError naming it, raised here in the client before
    anything reaches a worker.  ``guard_fraction`` (default 0.9) and
    ``guard_interval`` (seconds, default 0.1; None turns the guard off) set
    the trim-before-spill guard.  ``arrow=True`` puts Arrow's buffers
    (pandas 3 strings, Parquet data: :mod:`mempool.arrow`) in the worker's
    pool too, and adds the ``mempool_arrow_bytes`` metric.  Register with
    ``client.register_plugin(MempoolPlugin(...))``.
    """

    __doc__ = (__doc__ or "") + "\n    Settings: " + ", ".join(_settings.SETTINGS) + ".\n"

    name = "mempool"

    def __init__(self, *, guard_fraction: float = 0.9,
                 guard_interval: Optional[float] = 0.1, arrow: bool = False,
                 **pool_settings: Any) -> None:
        if not 0 < guard_fraction <= 1:
            raise ValueError(f"MempoolPlugin: guard_fraction must be in (0, 1], "
                             f"got {guard_fraction!r}")
        if guard_interval is not None and not guard_interval > 0:
            raise ValueError(f"MempoolPlugin: guard_interval must be > 0 seconds or "
                             f"None, got {guard_interval!r}")
        _settings.check(pool_settings, "MempoolPlugin()")
        if arrow:
            from mempool.arrow import require_pyarrow
            require_pyarrow()
        self.arrow = bool(arrow)
        self.pool_settings = dict(pool_settings)
        self.guard_fraction = guard_fraction
        self.guard_interval = guard_interval

    # Worker side; the attributes below exist only on the worker's copy.
    async def setup(self, worker: Any) -> None:
        """Install the pool in the worker process (see the module doc)."""
        self._pool = mempool.Pool(**self.pool_settings)
        self._capsule = self._pool._handler_capsule()
        self._default_capsule = _core.get_handler()   # what tasks get after teardown
        mempool.install(self._pool, arrow=getattr(self, "arrow", False))
        self._loop = asyncio.get_running_loop()
        self._previous_factory = self._loop.get_task_factory()
        self._loop.set_task_factory(self._task_factory)
        self._snapshot: Any = None
        self._snapshot_time = 0.0
        self.guard_trims = 0
        self.guard_trimmed_bytes = 0
        self._metric_names = list(METRICS) + ["mempool_guard_trims"]
        for name, (attr, _, _) in METRICS.items():
            worker.metrics[name] = self._metric(attr)
        worker.metrics["mempool_guard_trims"] = lambda w: self.guard_trims
        if getattr(self, "arrow", False):
            self._metric_names.append("mempool_arrow_bytes")
            worker.metrics["mempool_arrow_bytes"] = (
                lambda w: self.stats().arrow.bytes_allocated if self.stats().arrow else 0)
        self._collector = _register_collector(self)
        self._guard = None
        self._threshold = _guard_threshold(worker, self.guard_fraction)
        if self.guard_interval is not None and self._threshold is not None:
            from tornado.ioloop import PeriodicCallback
            self._guard = PeriodicCallback(self._check_guard, self.guard_interval * 1000)
            self._guard.start()
        worker._mempool_plugin = self
        logger.info("mempool installed on %s (guard at %s bytes RSS)",
                    getattr(worker, "address", "?"), self._threshold)

    def teardown(self, worker: Any) -> None:
        """Undo :meth:`setup`: tasks created from now on get the handler
        from before setup (the pool stays alive while arrays use it)."""
        if self._guard is not None:
            self._guard.stop()
        # Tasks created while the plugin was set up (the worker's long-lived
        # comm handlers among them) carry the pool in their contexts, and
        # their children copy it; so the factory stays, handing new tasks
        # the handler that was current before setup.
        self._capsule = self._default_capsule
        for name in self._metric_names:
            worker.metrics.pop(name, None)
        if self._collector is not None:
            import prometheus_client
            prometheus_client.REGISTRY.unregister(self._collector)
        if mempool.installed() is self._pool:
            mempool.uninstall()
        if getattr(worker, "_mempool_plugin", None) is self:
            del worker._mempool_plugin

    def _task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any,
                      context: Optional[contextvars.Context] = None, **kwargs: Any) -> Any:
        # As create_task: the task runs in a copy of the current context
        # (or in the context given), now with the pool as numpy's handler
        # (after teardown: the handler from before setup).
        ctx = context if context is not None else contextvars.copy_context()
        ctx.run(_core.set_handler, self._capsule)
        if self._previous_factory is not None:
            return self._previous_factory(loop, coro, context=ctx, **kwargs)
        return asyncio.Task(coro, loop=loop, context=ctx, **kwargs)

    def stats(self) -> Any:
        """The pool's stats, one snapshot per heartbeat."""
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot_time > _STATS_TTL:
            self._snapshot, self._snapshot_time = self._pool.stats(), now
        return self._snapshot

    def _metric(self, attr: str):
        return lambda worker: getattr(self.stats(), attr)

    def _check_guard(self) -> None:
        import psutil
        rss = psutil.Process().memory_info().rss
        if rss < self._threshold:
            return
        released = self._pool.trim()
        if released:
            self.guard_trims += 1
            self.guard_trimmed_bytes += released
            self._snapshot = None
            logger.info("mempool: RSS %d >= guard %d bytes: trimmed %d bytes",
                        rss, self._threshold, released)


def _register_collector(plugin: MempoolPlugin) -> Any:
    """A prometheus_client collector of the plugin's metrics in the default
    registry, which the worker's ``/metrics`` serves; None without
    prometheus_client."""
    try:
        import prometheus_client
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    except ImportError:
        return None

    class MempoolCollector:
        def collect(self):
            st = plugin.stats()
            for name, (attr, text, kind) in METRICS.items():
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(name, text, value=getattr(st, attr))
            yield CounterMetricFamily("mempool_guard_trims", "Trims by the spill guard",
                                      value=plugin.guard_trims)

        def describe(self):  # no collect() at registration time
            return []

    collector = MempoolCollector()
    prometheus_client.REGISTRY.register(collector)
    return collector


def worker_pool(dask_worker: Any = None) -> Optional[mempool.Pool]:
    """The pool the plugin (or a start-up install) put on this worker."""
    plugin = getattr(dask_worker, "_mempool_plugin", None)
    return plugin._pool if plugin is not None else mempool.installed()


def _trim_here(dask_worker: Any = None) -> int:
    pool = worker_pool(dask_worker)
    return pool.trim() if pool is not None else 0


def trim(client: Any) -> Dict[str, int]:
    """Give every worker pool's free pages back now; returns the bytes each
    worker released, by worker address (0 where no pool is installed)."""
    return client.run(_trim_here)
