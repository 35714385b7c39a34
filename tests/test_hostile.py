"""Hostile inputs and exhaustion: each one gets a clear exception with the
sizes in its message, and leaves the pool exactly as it was (check() == 0,
stats() identical apart from the error counters) and usable afterwards.

tests/test_errors.py covers the basic cases of each error once; this file
runs the whole table against a plain, a debug and a capacity-limited pool,
adds the extreme values (SIZE_MAX, 48-bit addresses, non-powers of two) and
the case where the OS itself refuses memory (RLIMIT_AS in a child).
"""
import dataclasses
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mempool
from mempool.errors import (DoubleFree, ForeignPointer, InteriorPointer, InvalidAlignment,
                            PoolExhausted, SizeMismatch, SizeOverflow)
from mempool import _testhooks as hooks

KiB, MiB = 1 << 10, 1 << 20
SIZE_MAX = 2 ** 64 - 1

# Fields that a refused call may change: the error counters themselves.
_ERROR_FIELDS = ("errors", "error_total")


def _snapshot(pool):
    st = dataclasses.asdict(pool.stats())
    return {k: v for k, v in st.items() if k not in _ERROR_FIELDS and "process" not in k}


def _make_pool(kind):
    # No decay and no purger: nothing changes the stats behind the test.
    common = dict(decay=math.inf, background_purge=False)
    if kind == "debug":
        return mempool.Pool(debug=True, **common)
    if kind == "capacity":
        return mempool.Pool(capacity=64 * MiB, small_max=1024, **common)
    return mempool.Pool(**common)


class Blocks:
    """Live blocks of every kind, and one freed block of every kind."""

    def __init__(self, pool):
        big = 12 * MiB if pool.capacity else 300 * MiB   # direct mapping if unlimited
        self.small = hooks.alloc(pool, 100)
        self.large = hooks.alloc(pool, 100 * KiB)
        self.big = hooks.alloc(pool, big)
        self.big_size = big
        freed = [hooks.alloc(pool, n) for n in (100, 100 * KiB, big)]
        for addr in freed:
            hooks.free(pool, addr)
        self.freed_small, self.freed_large, self.freed_big = freed
        for addr, n in ((self.small, 100), (self.large, 100 * KiB)):
            hooks.write(pool, addr, bytes(i % 251 for i in range(n)))


# (name, call(pool, blocks), exception class, substrings the message must hold)
HOSTILE = [
    ("alloc SIZE_MAX", lambda p, b: hooks.alloc(p, SIZE_MAX), SizeMismatch,
     [f"{SIZE_MAX} bytes"]),
    ("alloc 2**47", lambda p, b: hooks.alloc(p, 2 ** 47), SizeMismatch, [f"{2 ** 47} bytes"]),
    ("aligned SIZE_MAX-63, align 4096", lambda p, b: hooks.alloc(p, SIZE_MAX - 63, 4096),
     SizeMismatch, [f"{SIZE_MAX - 63} bytes"]),
    ("calloc count*size overflow", lambda p, b: hooks.calloc(p, 2 ** 33, 2 ** 31),
     SizeOverflow, [f"count {2 ** 33}", f"{2 ** 31} bytes"]),
    ("calloc SIZE_MAX x 2", lambda p, b: hooks.calloc(p, SIZE_MAX, 2), SizeOverflow,
     [f"count {SIZE_MAX}"]),
    ("calloc 2**46+1 x 1", lambda p, b: hooks.calloc(p, 2 ** 46 + 1, 1), SizeMismatch, []),
    ("realloc small to SIZE_MAX", lambda p, b: hooks.realloc(p, b.small, 100, SIZE_MAX),
     SizeMismatch, [f"{SIZE_MAX} bytes"]),
    ("realloc large to SIZE_MAX-1", lambda p, b: hooks.realloc(p, b.large, 0, SIZE_MAX - 1),
     SizeMismatch, [f"{SIZE_MAX - 1} bytes"]),
    ("align 3", lambda p, b: hooks.alloc(p, 64, 3), InvalidAlignment, ["align 3"]),
    ("align 48", lambda p, b: hooks.alloc(p, 64, 48), InvalidAlignment, ["align 48"]),
    ("align 2**31", lambda p, b: hooks.alloc(p, 64, 2 ** 31), InvalidAlignment,
     [f"align {2 ** 31}"]),
    ("align 2**63+1", lambda p, b: hooks.alloc(p, 64, 2 ** 63 + 1), InvalidAlignment, []),
    ("free small +1 (misaligned)", lambda p, b: hooks.free(p, b.small + 1), InteriorPointer,
     []),
    ("free small +8", lambda p, b: hooks.free(p, b.small + 8), InteriorPointer, []),
    ("free large +1", lambda p, b: hooks.free(p, b.large + 1), InteriorPointer, []),
    ("free large +4096", lambda p, b: hooks.free(p, b.large + 4096), InteriorPointer, []),
    ("free big +2 MiB", lambda p, b: hooks.free(p, b.big + 2 * MiB), InteriorPointer, []),
    ("free small, wrong size", lambda p, b: hooks.free(p, b.small, 101), SizeMismatch,
     ["101 bytes"]),
    ("free large, wrong size", lambda p, b: hooks.free(p, b.large, 100 * KiB - 1),
     SizeMismatch, [f"{100 * KiB - 1} bytes"]),
    ("free big, wrong size", lambda p, b: hooks.free(p, b.big, 7), SizeMismatch, ["7 bytes"]),
    ("realloc small, wrong old size", lambda p, b: hooks.realloc(p, b.small, 99, 50),
     SizeMismatch, ["99 bytes"]),
    ("double free small", lambda p, b: hooks.free(p, b.freed_small), DoubleFree, []),
    ("double free large", lambda p, b: hooks.free(p, b.freed_large), DoubleFree, []),
    ("double free big", lambda p, b: hooks.free(p, b.freed_big), DoubleFree, []),
    ("realloc of freed small", lambda p, b: hooks.realloc(p, b.freed_small, 0, 10),
     DoubleFree, []),
    ("foreign: numpy's own memory", lambda p, b: hooks.free(p, _NUMPY_BUF.ctypes.data),
     ForeignPointer, []),
    ("foreign: address 0x10", lambda p, b: hooks.free(p, 0x10), ForeignPointer, ["0x10"]),
    ("foreign: address 2**60", lambda p, b: hooks.free(p, 2 ** 60), ForeignPointer,
     [f"0x{2 ** 60:x}"]),
    ("foreign: realloc of 0x1000", lambda p, b: hooks.realloc(p, 0x1000, 0, 10),
     ForeignPointer, []),
    ("capacity: alloc 128 MiB", lambda p, b: hooks.alloc(p, 128 * MiB),
     PoolExhausted, [f"{128 * MiB} bytes", f"{64 * MiB} bytes"]),
]
_NUMPY_BUF = np.zeros(4096, np.uint8)


def _expected(name, kind, exc):
    # Only the capacity-limited pool refuses 128 MiB; the others grant it.
    if name.startswith("capacity"):
        return PoolExhausted if kind == "capacity" else None
    return exc


@pytest.mark.parametrize("kind", ["plain", "debug", "capacity"])
@pytest.mark.parametrize("name, call, exc, needles", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_refused_and_changes_nothing(kind, name, call, exc, needles):
    pool = _make_pool(kind)
    blocks = Blocks(pool)
    before = _snapshot(pool)
    errors_before = pool.stats().error_total
    want = _expected(name, kind, exc)
    if want is None:
        addr = call(pool, blocks)
        hooks.free(pool, addr)
        return
    with pytest.raises(want) as info:
        call(pool, blocks)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert pool.check() == 0
    assert _snapshot(pool) == before
    assert pool.stats().error_total == errors_before + 1
    # the live blocks kept their content and are still usable and freeable
    assert hooks.read(pool, blocks.small, 4) == bytes(range(4))
    moved = hooks.realloc(pool, blocks.small, 100, 200)
    hooks.free(pool, moved, 200)
    hooks.free(pool, blocks.large, 100 * KiB)
    hooks.free(pool, blocks.big, blocks.big_size)
    assert pool.stats().live_bytes == 0 and pool.check() == 0


@pytest.mark.parametrize("kind", ["plain", "debug"])
@pytest.mark.parametrize("size", [40, 100 * KiB, 300 * MiB])
def test_realloc_to_zero_frees_the_old_block(kind, size):
    pool = _make_pool(kind)
    addr = hooks.alloc(pool, size)
    zero = hooks.realloc(pool, addr, size, 0)
    st = pool.stats()
    assert st.live_bytes == 0 and hooks.requested_size(pool, zero) == 0
    if zero != addr:
        with pytest.raises(DoubleFree):
            hooks.free(pool, addr)
    hooks.free(pool, zero, 0)
    assert pool.check() == 0 and pool.stats().live_bytes == 0


def test_numpy_level_hostile_shapes_leave_the_pool_unchanged():
    pool = _make_pool("plain")
    before = _snapshot(pool)
    for shape in ((2 ** 62, 4), (-1,), (2 ** 40, 2 ** 40)):
        with pytest.raises((ValueError, MemoryError)):
            pool.empty(shape, np.float64)
    assert _snapshot(pool) == before and pool.check() == 0


_RLIMIT_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import mempool
    from mempool.errors import PoolExhausted
    MiB = 1 << 20
    pool = mempool.Pool(decay=float("inf"), background_purge=False)
    keep = pool.ones(3 * MiB, np.uint8)          # an arena exists before the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    import os
    vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vm + 64 * MiB                        # room for Python, not for the request
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    before = pool.stats()
    ask = 2048 * MiB
    try:
        pool.empty(ask, np.uint8)
    except PoolExhausted as exc:
        msg = str(exc)
        assert isinstance(exc, MemoryError), type(exc)
        assert exc.requested == ask and exc.capacity is None, (exc.requested, exc.capacity)
        assert f"{ask} bytes" in msg and "OS refused" in msg, msg
    else:
        sys.exit("no error for %d bytes under RLIMIT_AS %d" % (ask, limit))
    after = pool.stats()
    assert after.errors["MP_ENOMEM"] == before.errors["MP_ENOMEM"] + 1
    for f in ("live_bytes", "reserved_bytes", "resident_bytes", "arena_count",
              "direct_count", "allocated_bytes", "munmap_count"):
        assert getattr(after, f) == getattr(before, f), f
    assert pool.check() == 0
    small = pool.ones(1000, np.uint8)            # still works under the limit
    more = pool.ones(MiB, np.uint8)
    assert keep.sum() == 3 * MiB and small.sum() == 1000 and more.sum() == MiB
    del small, more, keep
    assert pool.check() == 0 and pool.stats().live_bytes == 0
    print("OK", after.mmap_count - before.mmap_count)
""")


def test_mmap_refused_under_rlimit_as_in_a_child():
    out = subprocess.run([sys.executable, "-c", _RLIMIT_CHILD], capture_output=True,
                         text=True, timeout=300)
    if "AddressSanitizer" in out.stderr or "LeakSanitizer" in out.stderr:
        pytest.skip("RLIMIT_AS cannot be combined with the ASan shadow")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK")
