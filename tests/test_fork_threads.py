"""multiprocessing (fork and spawn) and GIL-releasing threads under
mempool.install(): children allocate through a pool and return results; a
fork taken while another thread keeps the pool busy leaves the child a
working pool; threads that free each other's arrays keep it consistent.

The C tests (tests/c/test_fork.c, test_threads.c) cover the core itself,
under TSan; these cover the Python layer and numpy's handler on top.
"""
import multiprocessing as mp
import queue
import threading

import numpy as np
import pytest

import mempool

MiB = 1 << 20


def _child_work(n):
    """In a child: allocate through the installed pool (fork: inherited;
    spawn: installed here), compute, and report what the pool saw."""
    pool = mempool.installed() or mempool.install()
    before = pool.stats().alloc_count
    a = np.arange(n, dtype=np.float64)
    b = np.sqrt(a * a + 1.0)                     # temporaries through the pool
    big = np.ones(3 * MiB, np.uint8)
    result = (float(b.sum()), mempool.handler_name(b), mempool.handler_name(big))
    allocs = pool.stats().alloc_count - before
    del a, b, big
    return result + (allocs, pool.check())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_allocate_through_the_pool(method):
    pool = mempool.install(mempool.Pool())
    try:
        ctx = mp.get_context(method)
        sizes = [1000, 50000, 400000]
        with ctx.Pool(2) as workers:
            results = workers.map(_child_work, sizes)
    finally:
        mempool.uninstall()
    for n, (total, name_b, name_big, allocs, check) in zip(sizes, results):
        expect = float(np.sqrt(np.arange(n, dtype=np.float64) ** 2 + 1.0).sum())
        assert total == pytest.approx(expect)
        assert name_b == name_big == "mempool"
        assert allocs >= 3 and check == 0
    assert pool.check() == 0


def _fork_child(conn):
    conn.send(_child_work(200000))
    conn.close()


def test_fork_while_a_thread_keeps_the_pool_busy():
    pool = mempool.install(mempool.Pool())
    stop = threading.Event()
    churned = []

    def churn():  # allocates and frees small and large arrays without pause
        n = 0
        while not stop.is_set():
            a = np.empty(100 + n % 3000, np.float32)
            b = np.empty((n % 5 + 1) * MiB, np.uint8)
            a[:] = 1
            b[::4096] = 1
            del a, b
            n += 1
        churned.append(n)

    t = threading.Thread(target=churn)
    t.start()
    try:
        ctx = mp.get_context("fork")
        results = []
        for _ in range(6):  # several forks, each at a random point of churn
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_fork_child, args=(child,))
            p.start()
            child.close()
            assert parent.poll(120), "forked child did not answer (deadlock?)"
            results.append(parent.recv())
            p.join(60)
            assert p.exitcode == 0
    finally:
        stop.set()
        t.join()
        mempool.uninstall()
    assert churned and churned[0] > 0
    for total, name_b, name_big, allocs, check in results:
        assert name_b == name_big == "mempool" and check == 0 and allocs >= 3
    assert pool.check() == 0 and pool.stats().live_bytes == 0


def test_threads_free_each_others_arrays_while_numpy_releases_the_gil():
    # Generators made first: their state arrays are not the pool's business.
    rngs = [np.random.default_rng(s) for s in range(3)]
    pool = mempool.install(mempool.Pool())
    handoff = queue.Queue(maxsize=16)
    errors = []

    def producer(seed):
        try:
            rng = rngs[seed]
            for _ in range(150):
                n = int(rng.integers(16, 300000))
                a = rng.random(n)
                a.sort()                         # releases the GIL
                m = np.dot(a[:256], a[:256])     # BLAS, GIL released
                handoff.put((a, m, seed))
        except Exception as exc:                 # reported by the main thread
            errors.append(exc)

    def consumer():
        try:
            while True:
                item = handoff.get()
                if item is None:
                    return
                a, m, _ = item
                assert a[0] <= a[-1] and mempool.handler_name(a) == "mempool"
                assert np.dot(a[:256], a[:256]) == m
                del a, item                      # freed on this thread
        except Exception as exc:
            errors.append(exc)

    try:
        producers = [threading.Thread(target=producer, args=(s,)) for s in range(3)]
        consumers = [threading.Thread(target=consumer) for _ in range(2)]
        for t in producers + consumers:
            t.start()
        for t in producers:
            t.join()
        for _ in consumers:
            handoff.put(None)
        for t in consumers:
            t.join()
    finally:
        mempool.uninstall()
    assert not errors, errors
    assert pool.stats().live_bytes == 0
    assert pool.check() == 0
