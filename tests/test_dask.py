"""mempool.dask on a real LocalCluster (2 worker processes x 2 threads, on
127.0.0.1, bounded, closed at the end), and the plugin's parts in-process."""
import asyncio
import time
import urllib.request

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("prometheus_client")

import mempool  # noqa: E402
from mempool import dask as mdask  # noqa: E402

TIMEOUT = 60


def probe(i):
    """Run as a Dask task: which worker/thread ran it, the handler of the
    task's context and of an array made in it."""
    import threading
    from numpy._core.multiarray import get_handler_name
    a = np.ones(1000 + i)
    time.sleep(0.15)     # keep the thread busy so all four threads get tasks
    return (distributed.get_worker().address, threading.get_ident(),
            get_handler_name(), get_handler_name(a))


def hold(nbytes):
    """A task making (and dropping) a large array."""
    a = np.ones(nbytes // 8)
    return float(a[-1])


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=2,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  worker_dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster, timeout=TIMEOUT) as c:
        c.wait_for_workers(2, timeout=TIMEOUT)
        yield c


def _tasks(client, n=16):
    futures = client.map(probe, range(n), pure=False)
    return client.gather(futures)


def _metrics(client):
    return {addr: w["metrics"] for addr, w in client.scheduler_info()["workers"].items()}


def test_every_task_thread_uses_the_pool_before_and_after_restart_and_on_new_workers(client):
    before = _tasks(client)
    # the issue: without the plugin, tasks allocate with numpy's default
    assert {r[2] for r in before} == {"default_allocator"}
    client.register_plugin(mdask.MempoolPlugin(decay=0.5))
    try:
        for rounds in range(2):
            results = _tasks(client)
            assert {r[2:] for r in results} == {("mempool", "mempool")}, results
            assert len({r[0] for r in results}) == 2
            assert len({r[:2] for r in results}) == 4        # every worker thread
            if rounds == 0:
                old = {r[0] for r in results}
                client.restart(timeout=TIMEOUT)
                client.wait_for_workers(2, timeout=TIMEOUT)
        assert {r[0] for r in results} != old              # new worker processes

        # a worker that joins later gets the plugin at registration
        client.cluster.scale(3)
        client.wait_for_workers(3, timeout=TIMEOUT)
        joined = set(client.scheduler_info()["workers"]) - {r[0] for r in results}
        assert len(joined) == 1
        on_new = client.gather(client.map(probe, range(4), workers=list(joined),
                                          pure=False))
        assert {r[2:] for r in on_new} == {("mempool", "mempool")}, on_new
        client.cluster.scale(2)
        deadline = time.monotonic() + TIMEOUT
        while len(client.scheduler_info()["workers"]) > 2 and time.monotonic() < deadline:
            time.sleep(0.1)

        # metrics reach the scheduler (next heartbeat)
        client.gather(client.map(hold, [16 << 20] * 4, pure=False))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = _metrics(client)
            if all(m.get("mempool_peak_live_bytes", 0) >= 16 << 20 for m in metrics.values()):
                break
            time.sleep(0.25)
        for addr, m in metrics.items():
            for name in mdask.METRICS:
                assert name in m, (addr, sorted(m))
            assert m["mempool_peak_live_bytes"] >= 16 << 20
            assert m["mempool_reserved_bytes"] >= m["mempool_resident_bytes"] > 0

        # the worker's /metrics serves them
        for addr, w in client.scheduler_info()["workers"].items():
            port = w["services"]["dashboard"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=TIMEOUT) as resp:
                body = resp.read().decode()
            names = {line.split()[0] for line in body.splitlines()
                     if line.startswith("mempool_")}
            assert {"mempool_live_bytes", "mempool_resident_bytes", "mempool_reserved_bytes",
                    "mempool_peak_live_bytes", "mempool_fragmentation",
                    "mempool_released_bytes_total"} <= names, names

        released = mdask.trim(client)
        assert set(released) == set(metrics)
        assert all(isinstance(v, int) and v >= 0 for v in released.values())
    finally:
        client.unregister_worker_plugin("mempool")
    after = _tasks(client, 8)
    assert {r[2] for r in after} == {"default_allocator"}


@pytest.mark.parametrize("kwargs, error, text", [
    ({"capacty": 1 << 30}, TypeError, "capacty=1073741824"),
    ({"capacity": -1}, ValueError, "-1"),
    ({"decay": "soon"}, ValueError, "'soon'"),      # durations are parsed: "250ms" is one
    ({"huge_pages": "maybe"}, ValueError, "'maybe'"),
    ({"guard_fraction": 1.5}, ValueError, "1.5"),
    ({"guard_interval": 0}, ValueError, "0"),
])
def test_bad_plugin_settings_are_named(kwargs, error, text):
    with pytest.raises(error, match=text):
        mdask.MempoolPlugin(**kwargs)


def test_plugin_takes_size_and_duration_strings():
    plugin = mdask.MempoolPlugin(capacity="2GiB", decay="250ms", resident_limit="auto")
    assert plugin.pool_settings == {"capacity": "2GiB", "decay": "250ms",
                                    "resident_limit": "auto"}
    with pytest.raises(ValueError, match=r"capacity='1M': capacity = 1048576 bytes \(1 MiB\) "
                                         r"is out of range: at least 2097152"):
        mdask.MempoolPlugin(capacity="1M")


class _FakeMemoryManager:
    def __init__(self, limit):
        self.memory_limit = limit
        self.memory_target_fraction = False
        self.memory_spill_fraction = 0.7
        self.memory_pause_fraction = 0.8


class _FakeWorker:
    address = "fake"

    def __init__(self, limit):
        self.metrics = {}
        self.memory_manager = _FakeMemoryManager(limit)


def test_guard_threshold():
    assert mdask._guard_threshold(_FakeWorker(1000), 0.9) == 630
    assert mdask._guard_threshold(_FakeWorker(None), 0.9) is None
    w = _FakeWorker(1000)
    w.memory_manager.memory_spill_fraction = False
    assert mdask._guard_threshold(w, 1.0) == 800


def test_plugin_in_process_tasks_metrics_and_guard():
    """setup() on a fake worker: new asyncio tasks (and their executor jobs)
    get the pool, metrics read it, and the guard trims cached pages once RSS
    passes the threshold (a tiny memory_limit makes it pass at once)."""
    import prometheus_client
    plugin = mdask.MempoolPlugin(decay=float("inf"), guard_interval=None)
    worker = _FakeWorker(1 << 20)

    async def scenario():
        await plugin.setup(worker)
        try:
            from numpy._core.multiarray import get_handler_name

            async def in_task():
                loop = asyncio.get_running_loop()
                ctx = __import__("contextvars").copy_context()
                return (get_handler_name(),
                        await loop.run_in_executor(None, lambda: ctx.run(get_handler_name)))

            names = await asyncio.create_task(in_task())
            a = np.ones(32 << 17)          # 32 MiB, freed at once: cached (decay inf)
            del a
            plugin._snapshot = None
            metrics = {k: f(worker) for k, f in worker.metrics.items()}
            text = prometheus_client.generate_latest().decode()
            cached = plugin._pool.stats().resident_bytes
            plugin._check_guard()
            return names, metrics, text, cached, plugin._pool.stats().resident_bytes
        finally:
            plugin.teardown(worker)

    names, metrics, text, cached, after = asyncio.run(scenario())
    assert names == ("mempool", "mempool")
    assert set(mdask.METRICS) <= set(metrics)
    assert metrics["mempool_peak_live_bytes"] >= 32 << 20
    assert "mempool_resident_bytes" in text
    assert cached >= 32 << 20
    assert after < 1 << 20 and plugin.guard_trims == 1
    assert worker.metrics == {}
    assert mempool.installed() is None
    assert "mempool_resident_bytes" not in prometheus_client.generate_latest().decode()


def test_nanny_pre_spawn_environ_installs_at_worker_start(tmp_path, monkeypatch):
    """The route without the plugin: MEMPOOL_INSTALL=1 in
    distributed.nanny.pre-spawn-environ; the worker's interpreter installs
    the pool at start-up (the .pth), so every task gets it."""
    import dask
    from test_startup import make_startup_env     # the shipped .pth, or one in a user site
    env = make_startup_env(tmp_path)
    for var in ("PYTHONUSERBASE", "PYTHONPATH"):
        if var in env:
            monkeypatch.setenv(var, env[var])
    pre = {**dask.config.get("distributed.nanny.pre-spawn-environ"),
           "MEMPOOL_INSTALL": "1", "MEMPOOL_CAPACITY": "1GiB"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": pre}), \
            distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=2,
                                     host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                     worker_dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster, timeout=TIMEOUT) as c:
        c.wait_for_workers(1, timeout=TIMEOUT)
        results = c.gather(c.map(probe, range(8), pure=False))
        assert {r[2:] for r in results} == {("mempool", "mempool")}, results
        assert len({r[:2] for r in results}) == 2
        caps = c.run(lambda: mempool.installed().capacity)
        assert list(caps.values()) == [1 << 30]


def test_idle_worker_reports_no_fragmentation():
    """An idle worker (nothing live, freed pages cached) reports
    mempool_fragmentation 0, in its metrics and on /metrics; it read 1.0."""
    import prometheus_client
    plugin = mdask.MempoolPlugin(decay=float("inf"), guard_interval=None)
    worker = _FakeWorker(None)

    async def scenario():
        await plugin.setup(worker)
        try:
            a = plugin._pool.ones(8 << 17)       # 8 MiB, then dropped: cached
            del a
            plugin._snapshot = None
            st = plugin.stats()
            return (st.live_bytes, st.resident_bytes,
                    worker.metrics["mempool_fragmentation"](worker),
                    prometheus_client.generate_latest().decode())
        finally:
            plugin.teardown(worker)

    live, resident, fragmentation, text = asyncio.run(scenario())
    assert live == 0 and resident >= 8 << 20
    assert fragmentation == 0.0
    assert "\nmempool_fragmentation 0.0\n" in text
