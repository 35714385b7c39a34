"""Hypothesis drives a pool with hostile arguments between ordinary calls:
every refused call must raise the documented exception, count exactly one
error, and leave everything else (check(), live bytes, block contents) as it
was.  tests/test_stateful.py explores ordinary sequences; this one the
arguments a buggy caller or numpy could pass."""
import ctypes
import math

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize,
                                 invariant, rule)

import mempool
from mempool.errors import (DoubleFree, ForeignPointer, InteriorPointer, InvalidAlignment,
                            MempoolError, PoolExhausted, SizeMismatch, SizeOverflow)
from mempool import _testhooks as hooks

KiB, MiB = 1 << 10, 1 << 20
SIZE_MAX = 2 ** 64 - 1
MAX_REQUEST = 1 << 46  # csrc/base/base.h (MP_MAX_REQUEST): larger requests are refused

ORDINARY = st.one_of(st.integers(0, 600), st.integers(600, 300 * KiB),
                     st.sampled_from([5 * MiB, 12 * MiB]))
HUGE = st.one_of(st.integers(MAX_REQUEST + 1, SIZE_MAX),
                 st.sampled_from([SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, 2 ** 63]))
# (align 0 means "no alignment" to hooks.alloc; the fuzzer sends 0 to the core)
NOT_POW2 = st.one_of(st.integers(3, 2 ** 20).filter(lambda a: a & (a - 1)),
                     st.sampled_from([2 ** 31, 2 ** 40, SIZE_MAX]))
CONFIGS = [dict(), dict(debug=True), dict(capacity=48 * MiB, small_max=2048, decay=0),
           dict(decay=math.inf, background_purge=False, debug=True)]


def _pattern(addr, n):
    return bytes((addr // 64 + i) % 251 for i in range(n))


class HostilePool(RuleBasedStateMachine):
    blocks = Bundle("blocks")

    def __init__(self):
        super().__init__()
        self.live = {}          # address -> requested size
        self.freed = []         # addresses freed earlier (may be live again)
        self.errors = 0

    @initialize(config=st.sampled_from(CONFIGS))
    def make_pool(self, config):
        self.pool = mempool.Pool(**config)

    # -- ordinary calls, to have something to be hostile to ---------------

    @rule(target=blocks, size=ORDINARY)
    def alloc(self, size):
        try:
            addr = hooks.alloc(self.pool, size)
        except PoolExhausted:
            self.errors += 1
            return None
        self.live[addr] = size
        hooks.write(self.pool, addr, _pattern(addr, min(size, 256)))
        return addr

    @rule(addr=consumes(blocks))
    def free(self, addr):
        if addr is None or addr not in self.live:
            return
        size = self.live.pop(addr)
        assert hooks.read(self.pool, addr, min(size, 256)) == _pattern(addr, min(size, 256))
        hooks.free(self.pool, addr, size)
        self.freed.append(addr)

    # -- hostile calls ------------------------------------------------------

    def _refused(self, exc_type, call, *needles):
        before = self.pool.stats()
        try:
            call()
        except exc_type as exc:
            for needle in needles:
                assert needle in str(exc), (needle, str(exc))
        else:
            raise AssertionError(f"{call} was not refused with {exc_type}")
        after = self.pool.stats()
        assert after.error_total == before.error_total + 1
        assert after.live_bytes == before.live_bytes
        assert after.reserved_bytes == before.reserved_bytes
        self.errors += 1

    @rule(size=HUGE, align=st.sampled_from([0, 64, 4096, 2 ** 21]))
    def alloc_huge(self, size, align):
        self._refused(SizeMismatch, lambda: hooks.alloc(self.pool, size, align),
                      f"{size} bytes")

    @rule(count=st.integers(2, SIZE_MAX), size=st.integers(2, SIZE_MAX))
    def calloc_hostile(self, count, size):
        if count * size <= MAX_REQUEST:
            return
        exc = SizeOverflow if count * size > SIZE_MAX else SizeMismatch
        self._refused(exc, lambda: hooks.calloc(self.pool, count, size), f"count {count}")

    @rule(align=NOT_POW2)
    def bad_alignment(self, align):
        self._refused(InvalidAlignment, lambda: hooks.alloc(self.pool, 64, align),
                      f"align {align}")

    @rule(addr=blocks, delta=st.integers(1, 2 ** 20), new=ORDINARY)
    def interior(self, addr, delta, new):
        if addr is None or addr not in self.live or self.live[addr] < 2:
            return
        inside = addr + 1 + delta % (self.live[addr] - 1)
        if inside in self.live:
            return
        self._refused(InteriorPointer, lambda: hooks.free(self.pool, inside))
        self._refused(InteriorPointer, lambda: hooks.realloc(self.pool, inside, 0, new))

    @rule(addr=blocks, wrong=st.integers(1, SIZE_MAX))
    def wrong_size(self, addr, wrong):
        if addr is None or addr not in self.live or wrong == self.live[addr]:
            return
        self._refused(SizeMismatch, lambda: hooks.free(self.pool, addr, wrong),
                      f"{wrong} bytes")
        self._refused(SizeMismatch, lambda: hooks.realloc(self.pool, addr, wrong, 8))

    @rule(index=st.integers(0, 64), realloc=st.booleans())
    def stale(self, index, realloc):
        if not self.freed:
            return
        addr = self.freed[index % len(self.freed)]
        if addr in self.live or any(a < addr < a + max(n, 1) for a, n in self.live.items()):
            return  # handed out again: not stale any more
        call = ((lambda: hooks.realloc(self.pool, addr, 0, 10)) if realloc
                else (lambda: hooks.free(self.pool, addr)))
        self._refused((DoubleFree, ForeignPointer, InteriorPointer), call)

    @rule(addr=st.one_of(st.integers(1, 2 ** 16), st.integers(2 ** 48, SIZE_MAX)))
    def wild(self, addr):
        self._refused(ForeignPointer, lambda: hooks.free(self.pool, addr), f"0x{addr:x}")

    @rule(shape=st.sampled_from([(2 ** 62, 4), (-1,), (2 ** 40, 2 ** 40), (2 ** 63,)]))
    def numpy_shapes(self, shape):
        before = self.pool.stats()
        try:
            self.pool.empty(shape, np.float64)
        except (ValueError, MemoryError, OverflowError):
            pass
        else:
            raise AssertionError(f"numpy accepted shape {shape}")
        assert self.pool.stats().live_bytes == before.live_bytes

    @rule()
    def foreign_numpy_memory(self):
        outside = np.zeros(64, np.uint8)       # numpy's default allocator
        self._refused(ForeignPointer, lambda: hooks.free(self.pool, outside.ctypes.data))

    # -- invariants -----------------------------------------------------------

    @invariant()
    def consistent(self):
        if not hasattr(self, "pool"):
            return
        st_ = self.pool.stats()
        assert self.pool.check() == 0
        assert st_.live_bytes == sum(self.live.values())
        assert st_.error_total == self.errors

    def teardown(self):
        if not hasattr(self, "pool"):
            return
        for addr, size in list(self.live.items()):
            hooks.free(self.pool, addr, size)
        assert self.pool.stats().live_bytes == 0 and self.pool.check() == 0


HostilePool.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestHostilePool = HostilePool.TestCase
