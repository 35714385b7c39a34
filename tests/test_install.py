"""install()/uninstall(): process-wide, including threads started later."""
import threading

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

import mempool


def _in_new_thread(fn):
    out = {}

    def body():
        out["value"] = fn()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out["value"]


def test_install_reaches_new_threads(pool):
    original = threading.Thread._bootstrap_inner
    assert mempool.install(pool) is pool
    try:
        assert mempool.installed() is pool
        assert get_handler_name() == "mempool"
        assert _in_new_thread(get_handler_name) == "mempool"
        arr = _in_new_thread(lambda: np.ones(4321, np.uint8))
        assert get_handler_name(arr) == "mempool"
        assert pool.stats().live_bytes == arr.nbytes

        class Worker(threading.Thread):        # subclasses overriding run()
            def run(self):
                self.name_seen = get_handler_name()

        w = Worker()
        w.start()
        w.join()
        assert w.name_seen == "mempool"
    finally:
        assert mempool.uninstall() is pool
    assert mempool.installed() is None
    assert get_handler_name() == "default_allocator"
    assert _in_new_thread(get_handler_name) == "default_allocator"
    assert threading.Thread._bootstrap_inner is original
    del arr
    assert pool.stats().live_bytes == 0


def test_install_default_pool_and_reinstall():
    first = mempool.install()
    assert first is mempool.default_pool()
    other = mempool.Pool()
    try:
        assert mempool.install(other) is other
        assert mempool.installed() is other
        assert _in_new_thread(lambda: np.empty(100, np.uint8).nbytes) == 100
        assert other.stats().alloc_count >= 1
    finally:
        mempool.uninstall()
    # uninstall restores what was current before the first install
    assert get_handler_name() == "default_allocator"
    assert mempool.uninstall() is None


def test_installed_pool_cannot_be_closed(pool):
    mempool.install(pool)
    try:
        with pytest.raises(mempool.PoolBusy):
            pool.close()
    finally:
        mempool.uninstall()
    pool.close()
    assert pool.closed


def test_use_inside_install_nests(pool):
    inner = mempool.Pool()
    mempool.install(pool)
    try:
        with mempool.use(inner):
            a = np.empty(999, np.uint8)
        b = np.empty(555, np.uint8)
    finally:
        mempool.uninstall()
    assert inner.stats().live_bytes == 999
    assert pool.stats().live_bytes == 555
    del a, b
