"""Pool construction, array constructors, stats, repr, close, lifetime."""
import dataclasses
import gc
import math
import weakref

import numpy as np
import pytest

import mempool
from mempool import Pool, PoolBusy, PoolClosed, PoolStats, SizeClassStats
from mempool import _testhooks as hooks

MiB = 1 << 20


def test_defaults_are_the_cores(pool):
    cfg = pool.config
    assert cfg["capacity"] is None
    assert cfg["huge_pages"] == "auto"
    assert cfg["background_purge"] is True
    assert cfg["debug"] is False
    core = mempool._core.default_config()
    assert cfg["small_max"] == core["small_max"]
    assert cfg["arena_bytes"] == core["arena_bytes"]


def test_settings_reach_the_core():
    p = Pool(capacity=1 << 30, small_max=1024, huge_pages="off", decay=0.5,
             debug=True, background_purge=False)
    cfg = p.config
    assert cfg["capacity"] == 1 << 30
    assert cfg["small_max"] == 1024
    assert cfg["huge_pages"] == "off"
    assert cfg["decay"] == 0.5
    assert cfg["debug"] is True
    assert cfg["background_purge"] is False
    assert p.capacity == 1 << 30


@pytest.mark.parametrize("value, name", [(True, "on"), (False, "off"), ("on", "on")])
def test_huge_pages_spellings(value, name):
    assert Pool(huge_pages=value).config["huge_pages"] == name


def test_decay_infinite_means_trim_only():
    assert Pool(decay=math.inf).config["decay"] == math.inf
    assert Pool(decay=0).config["decay"] == 0.0


@pytest.mark.parametrize("kwargs, exc", [
    ({"capacity": -1}, ValueError),
    ({"capacity": 1 << 20}, ValueError),     # below the 2 MiB minimum
    ({"capacity": 2 ** 64}, ValueError),
    ({"capacity": "1000"}, ValueError),      # a size string: 1000 bytes, below the minimum
    ({"capacity": "12x"}, ValueError),
    ({"capacity": 1.5e9}, TypeError),
    ({"capacity": True}, TypeError),
    ({"small_max": 0}, ValueError),
    ({"small_max": 1 << 20}, ValueError),
    ({"small_max": "big"}, ValueError),
    ({"huge_pages": "maybe"}, ValueError),
    ({"huge_pages": 7}, ValueError),
    ({"decay": -1.0}, ValueError),
    ({"decay": float("nan")}, ValueError),
    ({"decay": "soon"}, ValueError),
    ({"debug": "yes"}, TypeError),
    ({"background_purge": 2}, TypeError),
    ({"retain_arenas": -1}, ValueError),
])
def test_bad_settings_name_the_value(kwargs, exc):
    (key, value), = kwargs.items()
    with pytest.raises(exc) as info:
        Pool(**kwargs)
    assert repr(value) in str(info.value)


def test_constructors_fill_and_place_data_in_pool(pool):
    arrays = {
        "empty": pool.empty((3, 4), np.int32),
        "zeros": pool.zeros((5, 6)),
        "ones": pool.ones(7, np.uint8),
        "full": pool.full((2, 2), 3.5, np.float32),
        "empty_like": pool.empty_like(np.arange(6).reshape(2, 3)),
        "zeros_like": pool.zeros_like(np.ones((4, 4), np.int16)),
        "asarray": pool.asarray([[1, 2], [3, 4]], dtype=np.int64),
    }
    for name, arr in arrays.items():
        assert mempool.handler_name(arr) == "mempool", name
        assert arr.flags.owndata, name
    assert arrays["empty"].shape == (3, 4) and arrays["empty"].dtype == np.int32
    assert not arrays["zeros"].any()
    assert (arrays["ones"] == 1).all() and arrays["ones"].dtype == np.uint8
    assert (arrays["full"] == 3.5).all() and arrays["full"].dtype == np.float32
    assert arrays["empty_like"].shape == (2, 3)
    assert arrays["zeros_like"].dtype == np.int16 and not arrays["zeros_like"].any()
    assert arrays["asarray"].tolist() == [[1, 2], [3, 4]]
    assert pool.stats().live_bytes == sum(a.nbytes for a in arrays.values())
    del arrays, arr
    gc.collect()
    assert pool.stats().live_bytes == 0


def test_fortran_order(pool):
    a = pool.zeros((10, 3), order="F")
    assert a.flags.f_contiguous and not a.flags.c_contiguous


def test_asarray_always_copies(pool):
    src = pool.ones(100)
    dst = pool.asarray(src)
    assert dst is not src and not np.shares_memory(src, dst)
    dst[0] = 5
    assert src[0] == 1
    assert mempool.handler_name(dst) == "mempool"


def test_live_bytes_track_arrays_exactly(pool):
    a = pool.empty(1000, np.uint8)
    assert pool.stats().live_bytes == 1000
    b = pool.empty((3, MiB), np.uint8)
    assert pool.stats().live_bytes == 1000 + 3 * MiB
    del a
    assert pool.stats().live_bytes == 3 * MiB
    del b
    st = pool.stats()
    assert st.live_bytes == 0
    assert st.peak_live_bytes >= 3 * MiB
    assert st.alloc_count == st.free_count == 2


def test_stats_fields_come_from_the_core_list(pool):
    # One list (mempool.h's MP_STATS_LIST) makes the C struct, the raw dict
    # and PoolStats' fields and docs: the three agree, in order.
    core = mempool._core.stats_fields()
    names = [name for name, _, _ in core]
    assert len(names) == len(set(names)) > 30
    assert [f.name for f in dataclasses.fields(PoolStats)][:len(names)] == names
    raw = pool._stats_raw()
    assert set(names) <= set(raw)
    assert set(raw) - set(names) == {"free_histogram_count", "free_histogram_bytes",
                                     "errors", "classes"}
    for name, unit, doc in core:
        assert unit in ("bytes", "calls", "count", "pages", "ns")
        assert f"{name} [{unit}]" in PoolStats.__doc__


def test_stats_is_a_frozen_documented_snapshot(pool):
    a = pool.zeros(100000)
    st = pool.stats()
    assert isinstance(st, PoolStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.live_bytes = 0
    d = st.as_dict()
    for f in dataclasses.fields(PoolStats):
        assert f.name in d
        assert f.name in PoolStats.__doc__, f"field {f.name} undocumented"
    for key in ("fragmentation", "resident_over_live", "live_blocks"):
        assert key in d
    assert set(st.errors) == {name for code, name in mempool.errors.ERROR_NAMES.items()
                              if code != mempool.errors.MP_OK}
    assert all(v == 0 for v in st.errors.values())
    assert all(isinstance(c, SizeClassStats) for c in st.classes)
    assert st.resident_bytes >= st.allocated_bytes >= st.live_bytes == a.nbytes
    assert st.reserved_bytes >= st.resident_bytes
    assert st.fragmentation == pytest.approx(1 - st.live_bytes / st.resident_bytes)
    assert st.resident_over_live == pytest.approx(st.resident_bytes / st.live_bytes)
    assert st.calloc_count == 1 and st.alloc_count == 1
    del a


def test_size_class_table_counts_small_blocks(pool):
    blocks = [hooks.alloc(pool, 24) for _ in range(10)]
    st = pool.stats()
    rows = [c for c in st.classes if c.live_blocks]
    assert sum(c.live_blocks for c in rows) == 10
    assert sum(c.live_bytes for c in rows) == 240
    assert all(c.block_size >= 24 and c.blocks >= c.live_blocks for c in rows)
    for addr in blocks:
        hooks.free(pool, addr)
    assert sum(c.live_blocks for c in pool.stats().classes) == 0


def test_first_slab_of_a_class_is_small(pool):
    # One small array takes its class's first slab: the fewest pages holding
    # two blocks and two pages, not a full 64 KiB slab; the class's slabs
    # then grow.
    cls = mempool._core.size_class_of(4096)
    first = hooks.alloc(pool, 4096)
    c = pool.stats().classes[cls]
    assert (c.block_size, c.slabs, c.blocks, c.live_blocks) == (4096, 1, 2, 1)
    more = [hooks.alloc(pool, 4096) for _ in range(40)]
    c = pool.stats().classes[cls]
    assert c.slabs >= 3 and c.blocks >= 41   # 2, 4, 8, 16, 16 ... blocks
    assert pool.check() == 0
    for addr in [first] + more:
        hooks.free(pool, addr)


def test_derived_figures_when_empty(pool):
    st = pool.stats()
    assert st.resident_over_live is None
    assert 0.0 <= st.fragmentation <= 1.0


def test_repr_says_it_at_a_glance():
    p = Pool(capacity=256 * MiB)
    a = p.empty(MiB, np.uint8)
    text = repr(p)
    for word in ("live=1.0 MiB", "resident=", "reserved=", "capacity=256.0 MiB",
                 "blocks=1"):
        assert word in text, text
    del a
    p.close()
    assert repr(p) == "<mempool.Pool closed>"


def test_close_refuses_while_arrays_live():
    p = Pool()
    a = p.empty(12345, np.uint8)
    with pytest.raises(PoolBusy) as info:
        p.close()
    assert "12345 bytes" in str(info.value)
    assert info.value.live_bytes == 12345
    assert not p.closed
    a[:] = 1                       # still usable after the refusal
    del a
    p.close()
    assert p.closed
    p.close()                      # twice is fine


def test_close_refuses_inside_use():
    p = Pool()
    with mempool.use(p):
        with pytest.raises(PoolBusy):
            p.close()
    p.close()


def test_closed_pool_raises_pool_closed():
    p = Pool()
    p.close()
    assert issubclass(PoolClosed, ValueError)
    for call in (lambda: p.empty(3), lambda: p.stats(), lambda: p.trim(),
                 lambda: p.check(), lambda: hooks.alloc(p, 8),
                 lambda: mempool.use(p).__enter__(), lambda: mempool.install(p)):
        with pytest.raises(PoolClosed):
            call()
    assert mempool.installed() is None


def test_arrays_keep_their_pool_alive():
    p = Pool()
    a = p.empty(100000)
    a[:] = 7.0
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is not None          # the array's capsule holds the pool
    assert (a == 7.0).all()
    b = a[10:20]                      # a view keeps the owner, hence the pool
    del a
    gc.collect()
    assert ref() is not None and (b == 7.0).all()
    del b
    gc.collect()
    assert ref() is None


def test_default_pool_is_one_pool():
    assert mempool.default_pool() is mempool.default_pool()
    assert isinstance(mempool.default_pool(), Pool)


def test_trim_and_check(pool):
    arrays = [pool.empty(n) for n in (10, 1000, 100000, 1000000)]
    del arrays
    assert pool.check() == 0
    given = pool.trim()
    assert isinstance(given, int) and given >= 0
    assert pool.stats().released_bytes >= given
    assert pool.check() == 0


def test_zero_size_arrays(pool):
    a = pool.empty(0)
    b = pool.zeros((0, 5))
    assert a.size == 0 and b.shape == (0, 5)
    assert mempool.handler_name(a) == "mempool"
    p1, p2 = hooks.alloc(pool, 0), hooks.alloc(pool, 0)
    assert p1 != p2                   # zero-size blocks are still unique
    hooks.free(pool, p1)
    hooks.free(pool, p2)
    del a, b
    assert pool.stats().live_bytes == 0


def test_huge_array_gets_its_own_mapping(pool):
    size = 300 * MiB
    assert size > pool.config["arena_bytes"]
    before = pool.stats()
    a = pool.empty(size, np.uint8)
    a[0] = 1
    a[-1] = 2
    st = pool.stats()
    assert st.direct_alloc_count == before.direct_alloc_count + 1
    assert st.live_bytes == size
    assert st.reserved_bytes >= size
    assert a[0] == 1 and a[-1] == 2
    del a
    assert pool.stats().live_bytes == 0
    assert pool.check() == 0
