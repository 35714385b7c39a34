"""Movable buffers and Pool.defragment(): handles, pinning, compaction.

Promises under test: a buffer pins while any view of it is alive and only
then; defragment moves only unpinned buffers, preserves every byte, and
brings resident memory within 10% of live after 50% random holes; misuse
(free while pinned, use after free, bad sizes) raises a clear exception.
"""
import gc

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes,
                                 invariant, rule)

import mempool


@pytest.fixture
def pool():
    p = mempool.Pool(decay=float("inf"), background_purge=False)
    yield p
    gc.collect()


def address(array):
    return array.__array_interface__["data"][0]


def test_buffer_basics(pool):
    buf = pool.buffer(10_000)
    assert isinstance(buf, mempool.Buffer)
    assert buf.nbytes == 10_000 and not buf.pinned and not buf.freed
    st0 = pool.stats()
    assert st0.buffer_count == 1 and st0.buffer_bytes == 10_000
    assert st0.live_bytes == 10_000
    view = buf.array((100, 25), np.float32)
    assert view.shape == (100, 25) and view.dtype == np.float32
    assert buf.pinned and pool.stats().pinned_buffer_count == 1
    view[:] = 7
    with pytest.raises(BufferError, match="10000 bytes is pinned"):
        buf.free()
    del view
    assert not buf.pinned
    with memoryview(buf) as mv:
        assert buf.pinned and mv.nbytes == 10_000 and mv[0] == 0  # 7.0f = 0x40e00000
    assert not buf.pinned
    assert (buf.array(2500, np.float32) == 7).all()
    buf.free()
    buf.free()  # twice: a no-op
    assert buf.freed and "freed" in repr(buf)
    with pytest.raises(ValueError, match="freed"):
        buf.array(1, np.uint8)
    assert pool.stats().buffer_count == 0 and pool.stats().live_bytes == 0


def test_buffer_bad_arguments(pool):
    with pytest.raises(TypeError, match="nbytes"):
        pool.buffer(1.5)
    with pytest.raises(ValueError, match="nbytes"):
        pool.buffer(-1)
    with pytest.raises(mempool.MempoolError, match=str(2**62)):
        pool.buffer(2**62)
    with pytest.raises(TypeError):
        mempool.Buffer()
    buf = pool.buffer(4096)
    with pytest.raises(ValueError, match="needs 8192 bytes"):
        buf.array(1024, np.float64)
    with pytest.raises(ValueError, match="offset"):
        buf.array(1, np.uint8, offset=4096)
    with pytest.raises(ValueError, match="negative"):
        buf.array((-1, 2), np.uint8)
    assert buf.array((2, 3), np.uint8, offset=4090).shape == (2, 3)
    buf.free()
    assert pool.stats().error_total >= 1  # the oversized request was counted


def test_buffer_capacity(pool):
    small = mempool.Pool(capacity=8 << 20)
    with pytest.raises(mempool.PoolExhausted) as info:
        small.buffer(16 << 20)
    assert info.value.requested == 16 << 20
    buf = small.buffer(1 << 20)
    with pytest.raises(mempool.PoolBusy):
        small.close()
    buf.free()
    small.close()


def test_buffer_keeps_pool_alive():
    buf = mempool.Pool().buffer(1 << 16)
    gc.collect()
    buf.array(16, np.uint8)[:] = 1  # the pool object lives on through the buffer
    buf.free()


def _fill(pool, sizes, rng):
    buffers, contents = [], []
    for n in sizes:
        buf = pool.buffer(int(n))
        data = rng.integers(0, 256, int(n), dtype=np.uint8)
        buf.array(int(n), np.uint8)[:] = data
        buffers.append(buf)
        contents.append(data)
    return buffers, contents


@pytest.mark.parametrize("low, high, count", [(4096, 256 << 10, 600),
                                              (4 << 20, 16 << 20, 40)],
                         ids=["small", "large"])
def test_defragment_half_holes(pool, low, high, count):
    """The issue's test: 50% random holes, resident within 10% of live after
    defragment, every byte preserved, pinned buffers in place."""
    rng = np.random.default_rng(5)
    buffers, contents = _fill(pool, rng.integers(low, high, count), rng)
    keep = rng.random(count) < 0.5
    for buf, kept in zip(buffers, keep):
        if not kept:
            buf.free()
    pins = {i: buffers[i].array(buffers[i].nbytes, np.uint8)
            for i in np.flatnonzero(keep)[::10]}
    pinned_at = {i: address(view) for i, view in pins.items()}
    before = pool.stats()
    assert before.resident_bytes > 1.5 * before.live_bytes  # the holes cost memory
    report = pool.defragment()
    after = pool.stats()
    assert report.moved_buffers > 0 and report.pinned_skipped == len(pins)
    assert after.live_bytes == before.live_bytes == report.live_bytes
    assert after.resident_bytes <= 1.10 * after.live_bytes, report.summary()
    assert report.resident_after == after.resident_bytes
    assert after.free_span_count < before.free_span_count
    assert after.defrag_count == 1 and after.defrag_moved_bytes == report.moved_bytes
    for i, view in pins.items():
        assert address(view) == pinned_at[i]
    del pins, view
    for i in np.flatnonzero(keep):
        assert np.array_equal(buffers[i].array(buffers[i].nbytes, np.uint8), contents[i])
        buffers[i].free()
    assert pool.stats().live_bytes == 0


def test_defragment_empties_arenas():
    """Buffers of a newer arena move into an older one's holes and the
    emptied arena goes back to the OS (reserved memory falls too)."""
    pool = mempool.Pool(huge_pages="off", decay=float("inf"), background_purge=False)
    rng = np.random.default_rng(1)
    buffers, contents = _fill(pool, [1 << 20] * 400, rng)  # 400 MiB: 2 arenas
    assert pool.stats().arena_count == 2
    for buf in buffers[::2]:
        buf.free()
    report = pool.defragment()
    after = pool.stats()
    assert after.arena_count == 1 and after.free_span_count <= 1, report.summary()
    assert after.reserved_bytes == 256 << 20
    for buf, data in list(zip(buffers, contents))[1::2]:
        assert np.array_equal(buf.array(buf.nbytes, np.uint8), data)
        buf.free()


def test_fragmentation_figures(pool):
    blocks = [pool.empty(n, np.uint8) for n in (1 << 20, 64 << 10, 1 << 20, 100)]
    del blocks[1]
    st = pool.stats()
    assert sum(c for _, c, _ in st.free_histogram) == st.free_span_count
    assert sum(b for _, _, b in st.free_histogram) == st.free_bytes
    assert st.free_histogram[4][0] == 64 << 10 and st.free_histogram[4][1] >= 1
    assert st.slab_free_bytes > 0  # the 100-byte block's slab has free blocks
    assert st.internal_waste_bytes == st.allocated_bytes - st.live_bytes > 0
    assert 0 < st.largest_free_share <= 1
    assert st.peak_resident_over_peak_live >= 1
    assert st.process_rss_bytes >= st.resident_bytes * 0.5
    d = st.as_dict()
    assert d["free_histogram"][4][0] == 64 << 10 and "internal_waste_bytes" in d


class BufferMachine(RuleBasedStateMachine):
    """Random create/write/pin/unpin/free/defragment against a model of the
    content: every byte survives every compaction."""

    buffers = Bundle("buffers")

    def __init__(self):
        super().__init__()
        self.pool = mempool.Pool(decay=0, background_purge=False, huge_pages="off")
        self.model = {}
        self.views = {}
        self.counter = 0

    @rule(target=buffers, n=st.integers(1, 300_000))
    def create(self, n):
        buf = self.pool.buffer(n)
        self.counter += 1
        value = self.counter % 251
        buf.array(n, np.uint8)[:] = value
        self.model[id(buf)] = (buf, value)
        return buf

    @rule(buf=buffers)
    def pin(self, buf):
        if not buf.freed:
            self.views.setdefault(id(buf), []).append(buf.array(buf.nbytes, np.uint8))

    @rule(buf=buffers)
    def unpin(self, buf):
        views = self.views.get(id(buf))
        if views:
            views.pop()

    @rule(buf=consumes(buffers))
    def free(self, buf):
        if self.views.get(id(buf)):
            with pytest.raises(BufferError):
                buf.free()
            self.views.pop(id(buf))
        buf.free()
        self.model.pop(id(buf), None)

    @rule()
    def defragment(self):
        report = self.pool.defragment()
        assert report.pinned_skipped == sum(1 for v in self.views.values() if v)

    @invariant()
    def content_and_check(self):
        for buf, value in self.model.values():
            data = buf.array(buf.nbytes, np.uint8)
            assert data[0] == value and data[-1] == value
        assert self.pool.check() == 0
        assert self.pool.stats().buffer_count == len(self.model)

    def teardown(self):
        self.views.clear()
        for buf, _ in self.model.values():
            buf.free()
        self.pool.close()


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=30, stateful_step_count=30,
                                      deadline=None)


@pytest.mark.parametrize("retain", [0, 1, 2])
def test_retain_arenas(retain):
    """Wholly free arenas beyond retain_arenas go back with the decay; trim
    releases them all (page heap: arenas of 256 MiB)."""
    pool = mempool.Pool(huge_pages="off", decay=0.05, background_purge=False,
                        retain_arenas=retain)
    assert pool.config["retain_arenas"] == retain
    blocks = [pool.empty(200 << 20, np.uint8) for _ in range(3)]  # 3 arenas
    assert pool.stats().arena_count == 3
    del blocks
    import time
    time.sleep(0.2)
    pool.purge_aged()
    assert pool.stats().arena_count == retain
    pool.trim()
    assert pool.stats().arena_count == 0


def test_retain_arenas_bad():
    with pytest.raises(TypeError, match="retain_arenas"):
        mempool.Pool(retain_arenas=1.5)
    with pytest.raises(ValueError, match="retain_arenas"):
        mempool.Pool(retain_arenas=-1)
