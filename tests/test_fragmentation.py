"""PoolStats.fragmentation: memory the pool holds that is neither live data nor
a cache it gives back; an empty or idle pool is not "fragmented"."""
import numpy as np
import pytest

from mempool import Pool

MiB = 1 << 20


@pytest.fixture
def cache_pool():
    # decay=inf: freed pages stay cached until trim(), so the figures do not
    # depend on when the test reads them.
    p = Pool(decay=float("inf"), background_purge=False, huge_pages="off")
    yield p
    p.close()


def test_empty_pool_reads_zero(cache_pool):
    st = cache_pool.stats()
    assert st.resident_bytes == 0 and st.fragmentation == 0.0


def test_idle_pool_holding_only_cache_reads_zero(cache_pool):
    # The Dask report: an idle worker (0 live bytes) read 1.0.
    arrays = [cache_pool.empty(n, np.uint8) for n in (100, 5000, 20000, MiB, 10 * MiB)]
    for a in arrays:
        a[:] = 1
    del arrays, a
    st = cache_pool.stats()
    assert st.live_bytes == 0 and st.resident_bytes > 10 * MiB
    # every resident byte is cache, but for the slabs' tails that no block fills
    assert 0 <= st.resident_bytes - st.cached_bytes < 64 << 10
    assert st.fragmentation == 0.0


def test_a_few_live_bytes_among_cache_read_near_zero(cache_pool):
    keep = cache_pool.empty(16, np.uint8)            # numpy keeps such blocks alive
    big = cache_pool.empty(8 * MiB, np.uint8)
    big[:] = 1
    del big
    st = cache_pool.stats()
    assert st.live_bytes == 16
    assert st.fragmentation < 0.01, st.as_dict()
    del keep


def test_holes_in_slabs_count(cache_pool):
    blocks = [cache_pool.empty(1000, np.uint8) for _ in range(4000)]
    full = cache_pool.stats()
    assert full.fragmentation < 0.1                  # only rounding 1000 -> class size
    del blocks[::2]                                  # a hole after every live block
    st = cache_pool.stats()
    assert st.live_bytes == 2000 * 1000
    # the holes (~half the slabs' memory) can be given back by neither decay nor trim
    assert 0.4 < st.fragmentation <= 0.6, st.as_dict()
    assert cache_pool.trim() >= 0
    assert cache_pool.stats().fragmentation == pytest.approx(st.fragmentation, abs=0.05)
    del blocks


def test_cached_bytes_is_dirty_free_plus_idle_classes(cache_pool):
    keep = cache_pool.empty(100, np.uint8)
    other = [cache_pool.empty(3000, np.uint8) for _ in range(10)]
    big = cache_pool.empty(4 * MiB, np.uint8)
    big[:] = 1
    del other, big
    st = cache_pool.stats()
    idle = sum(c.blocks * c.block_size for c in st.classes if c.live_blocks == 0)
    assert idle > 0 and st.dirty_free_bytes >= 4 * MiB
    assert st.cached_bytes == st.dirty_free_bytes + idle
    d = st.as_dict()
    assert d["cached_bytes"] == st.cached_bytes and d["fragmentation"] == st.fragmentation
    assert st.fragmentation == pytest.approx(
        (st.resident_bytes - st.live_bytes - st.cached_bytes) / st.resident_bytes)
    del keep
