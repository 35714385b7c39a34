"""mempool.ray: the setup hook in-process, and in real Ray workers (a local
ray.init on 127.0.0.1, skipped when ray is not installed)."""
import os
import subprocess
import sys
import textwrap

import pytest

import mempool
from mempool import ray as mray

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_runtime_env_carries_the_settings():
    env = mray.runtime_env(capacity=1 << 30, decay=0.5)
    assert env == {"worker_process_setup_hook": "mempool.ray.setup",
                   "env_vars": {"MEMPOOL_CAPACITY": str(1 << 30), "MEMPOOL_DECAY": "0.5"}}


@pytest.mark.parametrize("kwargs, error, text", [
    ({"capacty": 5}, TypeError, r"capacty=5 \(did you mean 'capacity'\?\)"),
    ({"capacity": -1}, ValueError, r"capacity = \d+ \(-1\) is out of range"),
    ({"capacity": 1}, ValueError, r"capacity = 1 bytes is out of range: at least 2097152"),
    ({"huge_pages": "maybe"}, ValueError, "'maybe'"),
])
def test_runtime_env_rejects_bad_settings(kwargs, error, text):
    with pytest.raises(error, match=text):
        mray.runtime_env(**kwargs)


def test_setup_hook_installs_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEMPOOL_CAPACITY", "256MiB")
    pool = mray.setup()
    try:
        assert mempool.installed() is pool and pool.capacity == 256 << 20
        assert mempool.handler_name() == "mempool"
        assert mray.setup() is pool        # a second call keeps the pool
    finally:
        mempool.uninstall()
        pool.close()


def test_pooled_wraps_functions_and_coroutines(pool):
    import asyncio
    mempool.install(pool)
    try:
        name = mray.pooled(lambda: mempool.handler_name())
        async def coro():
            return mempool.handler_name()
        assert name() == "mempool"
        assert asyncio.run(mray.pooled(coro)()) == "mempool"
        import threading
        from numpy._core.multiarray import get_handler_name
        import contextvars
        out = []
        # a thread with an empty context, as Ray's C++ threads have
        t = threading.Thread(target=lambda: contextvars.Context().run(
            lambda: out.append((get_handler_name(), name()))))
        t.start(); t.join()
        assert out == [("default_allocator", "mempool")]
    finally:
        mempool.uninstall()


def test_setup_hook_bad_value_installs_nothing(monkeypatch):
    monkeypatch.setenv("MEMPOOL_DECAY", "soon")
    with pytest.raises(ValueError, match="MEMPOOL_DECAY='soon'"):
        mray.setup()
    assert mempool.installed() is None


RAY_SCRIPT = """
    import ray, threading, mempool.ray
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, runtime_env=mempool.ray.runtime_env(capacity=1 << 30))

    @ray.remote
    def task(i):
        import numpy as np, mempool
        from numpy._core.multiarray import get_handler_name as g
        a = np.ones(100000)
        return g(), g(a), mempool.installed().capacity

    @ray.remote
    class Threaded:
        def run(self):
            from numpy._core.multiarray import get_handler_name as g
            out = []
            t = threading.Thread(target=lambda: out.append(g())); t.start(); t.join()
            return g(), out[0]

    @ray.remote
    class Async:
        async def run(self):
            from numpy._core.multiarray import get_handler_name as g
            return g()

    @ray.remote
    class PooledThreaded:
        @mempool.ray.pooled
        def run(self):
            from numpy._core.multiarray import get_handler_name as g
            import numpy as np
            return g(), g(np.ones(1000))

    @ray.remote
    class PooledAsync:
        @mempool.ray.pooled
        async def run(self):
            from numpy._core.multiarray import get_handler_name as g
            return g()

    print("tasks", sorted(set(ray.get([task.remote(i) for i in range(6)], timeout=120))))
    a = Threaded.remote()
    print("actor", ray.get(a.run.remote(), timeout=120))
    a = Threaded.options(max_concurrency=2).remote()
    print("threaded-actor", ray.get(a.run.remote(), timeout=120))
    a = Async.remote()
    print("async-actor", ray.get(a.run.remote(), timeout=120))
    a = PooledThreaded.options(max_concurrency=2).remote()
    print("pooled-threaded-actor", ray.get(a.run.remote(), timeout=120))
    a = PooledAsync.remote()
    print("pooled-async-actor", ray.get(a.run.remote(), timeout=120))
    ray.shutdown()
"""


def test_real_ray_workers(tmp_path):
    # ray is looked up, not imported: it is not in the test extra (a 79 MB
    # wheel), and under ASan its native code reports leaks of its own
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install ray to run this test)")
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("ray's native code leaks under LeakSanitizer; run without ASan")
    script = tmp_path / "ray_probe.py"
    script.write_text(textwrap.dedent(RAY_SCRIPT))
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_USAGE_STATS_ENABLED": "0"}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert f"tasks [('mempool', 'mempool', {1 << 30})]" in res.stdout, res.stdout
    assert "\nactor ('mempool', 'mempool')" in res.stdout, res.stdout
    # Ray runs threaded and async actors' methods on threads its C++ core
    # starts: no Python thread start to hook, so only threads the method
    # starts get the pool, unless the method is wrapped by mempool.ray.pooled.
    assert "\nthreaded-actor ('default_allocator', 'mempool')" in res.stdout, res.stdout
    assert "\nasync-actor default_allocator" in res.stdout, res.stdout
    assert "pooled-threaded-actor ('mempool', 'mempool')" in res.stdout, res.stdout
    assert "pooled-async-actor mempool" in res.stdout, res.stdout
