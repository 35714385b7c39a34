"""The NEP 49 handler: use(), context locality, realloc/calloc paths,
tracemalloc, threads.  Mirrors numpy/_core/tests/test_mem_policy.py."""
import asyncio
import gc
import threading
import tracemalloc

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name, get_handler_version

import mempool
from mempool import _testhooks as hooks

MiB = 1 << 20


def test_use_sets_and_restores_the_handler(pool):
    assert get_handler_name() == "default_allocator"
    with mempool.use(pool) as p:
        assert p is pool
        assert get_handler_name() == "mempool"
        a = np.arange(10).reshape((2, 5))     # a view; a.base owns the data
        assert get_handler_name(a) is None
        assert get_handler_name(a.base) == "mempool"
        assert get_handler_version(a.base) == 1
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(np.arange(3)) == "default_allocator"
    assert pool.stats().live_bytes == a.base.nbytes


def test_use_without_pool_takes_the_default_pool():
    with mempool.use() as p:
        assert p is mempool.default_pool()
        a = np.ones(1000)
    assert get_handler_name(a) == "mempool"
    assert p.stats().live_bytes >= a.nbytes


def test_use_restores_after_an_exception(pool):
    with pytest.raises(KeyError):
        with mempool.use(pool):
            raise KeyError("boom")
    assert get_handler_name() == "default_allocator"


def test_use_rejects_non_pools():
    with pytest.raises(TypeError):
        with mempool.use("pool"):
            pass


def test_nested_use_routes_to_the_innermost_pool():
    outer, inner = mempool.Pool(), mempool.Pool()
    with mempool.use(outer):
        a = np.empty(1000, np.uint8)
        with mempool.use(inner):
            b = np.empty(3000, np.uint8)
            with mempool.use(outer):
                c = np.empty(500, np.uint8)
            d = np.empty(7, np.uint8)
        e = np.empty(11, np.uint8)
    assert outer.stats().live_bytes == 1000 + 500 + 11
    assert inner.stats().live_bytes == 3000 + 7
    del a, b, c, d, e
    assert outer.stats().live_bytes == inner.stats().live_bytes == 0


def test_arrays_outlive_use_and_are_freed_through_the_pool(pool):
    with mempool.use(pool):
        a = np.full(100000, 3.0)
    assert pool.stats().live_bytes == a.nbytes
    b = a * 2                                  # made outside: default handler
    assert get_handler_name(b) == "default_allocator"
    assert (b == 6.0).all()
    frees = pool.stats().free_count
    del a
    st = pool.stats()
    assert st.live_bytes == 0 and st.free_count == frees + 1


def _thread_sees(results, key, pool=None):
    def body():
        results[key] = get_handler_name()
        if pool is not None:
            with mempool.use(pool):
                results[key + "_inside"] = get_handler_name()
    return body


def test_thread_locality(pool):
    # a new thread starts with numpy's default; its changes stay its own
    results = {}
    with mempool.use(pool):
        t = threading.Thread(target=_thread_sees(results, "child", pool))
        t.start()
        t.join()
        assert get_handler_name() == "mempool"
    assert results == {"child": "default_allocator", "child_inside": "mempool"}
    assert get_handler_name() == "default_allocator"


async def _task_sets(pool, event):
    with mempool.use(pool):
        assert get_handler_name() == "mempool"
        event.set()
        await asyncio.sleep(0)
        return get_handler_name()


async def _task_observes(event):
    await event.wait()
    # not affected by a change in a parallel task
    return get_handler_name()


async def _context_locality(pool, parent_pool):
    with mempool.use(parent_pool):
        event = asyncio.Event()
        t1 = asyncio.create_task(_task_sets(pool, event))
        t2 = asyncio.create_task(_task_observes(event))
        r1, r2 = await t1, await t2
        inherited = await asyncio.create_task(asyncio.sleep(0, get_handler_name()))
        arr = await asyncio.create_task(_make_array())
        return r1, r2, inherited, arr


async def _make_array():
    return np.ones(1234, np.uint8)


def test_asyncio_locality(pool):
    parent = mempool.Pool()
    r1, r2, inherited, arr = asyncio.run(_context_locality(pool, parent))
    assert (r1, r2, inherited) == ("mempool", "mempool", "mempool")
    # tasks inherit the parent's handler: the array came from `parent`
    assert parent.stats().live_bytes >= arr.nbytes
    assert pool.stats().live_bytes == 0
    assert get_handler_name() == "default_allocator"
    del arr


def test_asyncio_child_change_does_not_leak_to_parent(pool):
    async def child():
        mempool._core.set_handler(pool._handler_capsule())
        return get_handler_name()

    async def parent():
        name = await asyncio.create_task(child())
        return name, get_handler_name()

    assert asyncio.run(parent()) == ("mempool", "default_allocator")


def test_resize_goes_through_realloc(pool):
    with mempool.use(pool):
        a = np.arange(10, dtype=np.int64)
        before = pool.stats().realloc_count
        a.resize(200000, refcheck=False)
        assert pool.stats().realloc_count == before + 1
        assert a[:10].tolist() == list(range(10))
        assert not a[10:].any()                # numpy zero-fills the growth
        a.resize(5, refcheck=False)
        assert a.tolist() == [0, 1, 2, 3, 4]
    assert get_handler_name(a) == "mempool"
    assert pool.stats().live_bytes == a.nbytes
    del a
    assert pool.stats().live_bytes == 0


def test_fromiter_of_unknown_length_reallocates(pool):
    n = 300000
    with mempool.use(pool):
        a = np.fromiter((i * 3 for i in range(n)), dtype=np.int64)
    st = pool.stats()
    assert st.realloc_count >= 2
    assert a.shape == (n,) and a[-1] == 3 * (n - 1) and a[12345] == 3 * 12345
    assert st.live_bytes == a.nbytes
    del a
    assert pool.stats().live_bytes == 0


@pytest.mark.parametrize("nbytes", [64, 1000, 40000, 3 * MiB])
def test_zeros_after_dirty_reuse_reads_zero(pool, nbytes):
    with mempool.use(pool):
        reused = False
        for _ in range(4):
            dirty = np.empty(nbytes, np.uint8)
            dirty[:] = 0xAB
            addr = dirty.ctypes.data
            del dirty
            clean = np.zeros(nbytes, np.uint8)
            reused |= clean.ctypes.data == addr
            assert not clean.any()
            del clean
    assert reused, "the pool never reused a just-freed block of the same size"
    assert pool.stats().calloc_count == 4


def test_debug_calloc_zeroes_reused_memory(pool):
    for size in (24, 5000, 300000):
        addr = hooks.alloc(pool, size)
        hooks.write(pool, addr, b"\xff" * size)
        hooks.free(pool, addr)
        zaddr = hooks.calloc(pool, size, 1)
        assert hooks.read(pool, zaddr, size) == bytes(size)
        hooks.free(pool, zaddr)


def test_tracemalloc_sees_pool_arrays(pool):
    domain = np.lib.tracemalloc_domain
    tracemalloc.start()
    try:
        with mempool.use(pool):
            a = np.empty(MiB + 123, np.uint8)
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.DomainFilter(True, domain)])
        assert any(t.size == MiB + 123 for t in snap.traces)
        del a
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.DomainFilter(True, domain)])
        assert not any(t.size == MiB + 123 for t in snap.traces)
    finally:
        tracemalloc.stop()


def test_arrays_cross_threads(pool):
    made = []

    def worker():
        with mempool.use(pool):
            for i in range(200):
                made.append(np.full(10 + i * 37, i, np.int32))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 800
    assert pool.stats().live_bytes == sum(a.nbytes for a in made)
    for a in made:
        assert (a == a[0]).all()
    del made, a                                # freed on another thread
    assert pool.stats().live_bytes == 0
    assert pool.check() == 0


def test_concurrent_alloc_free_keeps_the_pool_consistent(pool):
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            with mempool.use(pool):
                keep = []
                for _ in range(300):
                    n = int(rng.integers(1, 200000))
                    a = np.empty(n, np.uint8)
                    a[0] = a[-1] = seed
                    keep.append(a)
                    if len(keep) > 8:
                        b = keep.pop(int(rng.integers(0, len(keep))))
                        assert b[0] == b[-1] == seed
                        del b
                del keep
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pool.stats().live_bytes == 0
    assert pool.check() == 0


def test_handler_capsules_keep_the_pool_in_use_while_alive(pool):
    # A capsule is made per use() / constructor call (sharing one safely
    # across threads would need an "incref unless dying", which CPython
    # 3.13 lacks); each keeps the pool in use, and so open, while it lives.
    with mempool.use(pool):
        a = np.empty(10)
        cap = mempool._core.get_handler()
    other = pool._handler_capsule()
    assert other is not cap and mempool.handler_name(a) == "mempool"
    del a, cap
    gc.collect()
    assert pool._handler_in_use
    with pytest.raises(mempool.PoolBusy, match="data-memory handler"):
        pool.close()
    del other
    gc.collect()
    assert not pool._handler_in_use
    pool.close()
    assert pool.closed
