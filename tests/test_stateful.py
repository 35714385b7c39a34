"""Random sequences of alloc/calloc/realloc/free/write driven through the
pool's C API (the test hooks, ``mempool._testhooks``), checked against a
Python model."""
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes,
                                 initialize, invariant, precondition, rule)

import mempool
from mempool.errors import DoubleFree, ForeignPointer, InteriorPointer
from mempool import _testhooks as hooks

KiB = 1 << 10

# Small (slabs), large (TLSF) and a few bigger than most arenas' granules.
SIZES = st.one_of(
    st.integers(0, 512),
    st.integers(513, 64 * KiB),
    st.integers(64 * KiB, 2048 * KiB),
)
# How much of a block the model remembers byte for byte.
PREFIX = 4 * KiB
# Pool settings worth exploring: defaults, fill patterns, pages given back at
# once (every free reaches the release paths), a small slab limit.
CONFIGS = [
    {},
    {"debug": True},
    {"decay": 0},
    {"small_max": 1024, "decay": 0, "background_purge": False, "debug": True},
]


class PoolModel(RuleBasedStateMachine):
    """Model: address -> (requested size, known prefix bytes)."""

    blocks = Bundle("blocks")

    def __init__(self):
        super().__init__()
        self.pool = None
        self.live = {}
        self.freed = set()
        self.counts = {"alloc": 0, "calloc": 0, "free": 0, "realloc": 0}
        self.errors = 0

    @initialize(config=st.sampled_from(CONFIGS))
    def open_pool(self, config):
        self.pool = mempool.Pool(**config)

    def _add(self, addr, size, content):
        assert addr not in self.live, "address handed out twice"
        self.live[addr] = (size, content)
        self.freed.discard(addr)
        return addr

    @rule(target=blocks, size=SIZES)
    def alloc(self, size):
        addr = hooks.alloc(self.pool, size)
        assert addr % 64 == 0
        self.counts["alloc"] += 1
        return self._add(addr, size, b"")

    @rule(target=blocks, count=st.integers(0, 300), size=st.integers(0, 600))
    def calloc(self, count, size):
        addr = hooks.calloc(self.pool, count, size)
        n = count * size
        self.counts["alloc"] += 1
        self.counts["calloc"] += 1
        known = min(n, PREFIX)
        assert hooks.read(self.pool, addr, known) == bytes(known), "calloc not zeroed"
        return self._add(addr, n, bytes(known))

    @rule(addr=blocks, data=st.binary(min_size=1, max_size=PREFIX))
    def write(self, addr, data):
        if addr not in self.live:
            return
        size, content = self.live[addr]
        data = data[:size]
        hooks.write(self.pool, addr, data)
        self.live[addr] = (size, data + content[len(data):])

    @rule(target=blocks, addr=consumes(blocks), new=SIZES, tell_old=st.booleans())
    def realloc(self, addr, new, tell_old):
        if addr not in self.live:
            return addr
        size, content = self.live.pop(addr)
        moved = hooks.realloc(self.pool, addr, size if tell_old else 0, max(new, 1))
        self.counts["realloc"] += 1
        if moved != addr:
            self.freed.add(addr)
        new = max(new, 1)
        return self._add(moved, new, content[:new])

    @rule(addr=consumes(blocks), tell_size=st.booleans())
    def free(self, addr, tell_size):
        if addr not in self.live:
            return
        size, _ = self.live.pop(addr)
        hooks.free(self.pool, addr, size if tell_size else 0)
        self.counts["free"] += 1
        self.freed.add(addr)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def free_again(self, data):
        addr = data.draw(st.sampled_from(sorted(self.freed)))
        before = self.pool.stats()
        try:
            hooks.free(self.pool, addr)
        except (DoubleFree, InteriorPointer, ForeignPointer):
            pass
        else:
            raise AssertionError(f"freeing 0x{addr:x} twice was accepted")
        self.errors += 1
        after = self.pool.stats()
        assert after.live_bytes == before.live_bytes
        assert after.free_count == before.free_count

    @rule()
    def trim(self):
        given = self.pool.trim()
        assert given >= 0

    @invariant()
    def counters_match(self):
        st_ = self.pool.stats()
        assert st_.live_bytes == sum(s for s, _ in self.live.values())
        assert st_.alloc_count == self.counts["alloc"]
        assert st_.calloc_count == self.counts["calloc"]
        assert st_.free_count == self.counts["free"]
        assert st_.realloc_count == self.counts["realloc"]
        assert st_.error_total == self.errors
        assert st_.allocated_bytes >= st_.live_bytes

    @invariant()
    def blocks_are_disjoint_and_intact(self):
        end = 0
        for addr in sorted(self.live):
            size, content = self.live[addr]
            assert addr >= end, f"block 0x{addr:x} overlaps the previous one"
            end = addr + max(size, 1)
            assert hooks.requested_size(self.pool, addr) == size
            assert hooks.usable_size(self.pool, addr) >= size
            if content:
                assert hooks.read(self.pool, addr, len(content)) == content

    @invariant()
    def healthy(self):
        assert self.pool.check() == 0

    def teardown(self):
        if self.pool is None:
            return
        for addr, (size, _) in list(self.live.items()):
            hooks.free(self.pool, addr, size)
        assert self.pool.stats().live_bytes == 0
        assert self.pool.check() == 0
        self.pool.close()


PoolModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestPoolModel = PoolModel.TestCase
