"""Error mapping, misuse caught by the core, capacity exhaustion, bad input."""
import gc
import sys
import warnings

import numpy as np
import pytest

import mempool
from mempool import _core, errors
from mempool.errors import (DoubleFree, ForeignPointer, InteriorPointer,
                            InvalidAlignment, MempoolError, PoolExhausted,
                            SizeMismatch, SizeOverflow, error_from_code)
from mempool import _testhooks as hooks

MiB = 1 << 20


def test_error_names_match_the_core():
    assert _core.ERROR_COUNT == len(errors.ERROR_NAMES)
    for code, name in errors.ERROR_NAMES.items():
        assert _core.error_name(code) == name
        assert _core.strerror(code) == errors.ERROR_TEXTS[code]


def _classes_with_a_code():
    out, todo = [], [MempoolError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.error_name is not None:
            out.append(cls)
    return out


def test_every_core_code_has_a_class_and_every_class_a_core_code():
    table = _core.error_table()
    codes = [code for code, _, _ in table]
    names = [name for _, name, _ in table]
    # MP_ERROR_COUNT covers the whole list: codes 0, -1, ... with no gap,
    # and the first code past the count is unknown to the core
    assert codes == [-i for i in range(_core.ERROR_COUNT)]
    assert _core.error_name(-_core.ERROR_COUNT) == "MP_UNKNOWN"
    assert names[0] == "MP_OK" and len(set(names)) == len(names)
    classes = _classes_with_a_code()
    assert sorted(cls.error_name for cls in classes) == sorted(names[1:])
    for cls in classes:
        assert cls.code == errors.CODES[cls.error_name]
        assert type(error_from_code(cls.code)) is cls


@pytest.mark.parametrize("name, cls, builtin", [
    ("MP_ENOMEM", PoolExhausted, MemoryError),
    ("MP_EINVAL", errors.InvalidArgument, ValueError),
    ("MP_EDOUBLEFREE", DoubleFree, ValueError),
    ("MP_EFOREIGN", ForeignPointer, ValueError),
    ("MP_EINTERIOR", InteriorPointer, ValueError),
    ("MP_ESIZE", SizeMismatch, ValueError),
    ("MP_EOVERFLOW", SizeOverflow, OverflowError),
    ("MP_EALIGN", InvalidAlignment, ValueError),
    ("MP_EBUSY", errors.PoolBusy, RuntimeError),
])
def test_error_from_code_classes(name, cls, builtin):
    code = errors.CODES[name]
    exc = error_from_code(code, size=4096, address=0x1000)
    assert type(exc) is cls
    assert isinstance(exc, MempoolError) and isinstance(exc, builtin)
    assert exc.code == code
    if code != errors.MP_ENOMEM:
        assert "4096 bytes" in str(exc) and "0x1000" in str(exc)


def test_size_overflow_is_also_a_memory_error():
    assert issubclass(SizeOverflow, MemoryError)


def test_unknown_code_and_non_error():
    past_the_table = min(errors.ERROR_NAMES) - 89
    assert type(error_from_code(past_the_table)) is MempoolError
    with pytest.raises(ValueError):
        error_from_code(errors.MP_OK)


def test_pool_exhausted_carries_the_sizes():
    exc = error_from_code(errors.MP_ENOMEM, requested=3 * MiB, capacity=2 * MiB, live_bytes=MiB)
    assert (exc.requested, exc.capacity, exc.live_bytes) == (3 * MiB, 2 * MiB, MiB)
    for n in (3 * MiB, 2 * MiB, MiB):
        assert f"{n} bytes" in str(exc)


def _errors(pool, name):
    return pool.stats().errors[name]


def test_double_free(pool):
    for size in (40, 100000):
        addr = hooks.alloc(pool, size)
        hooks.free(pool, addr)
        before = pool.stats()
        with pytest.raises(DoubleFree) as info:
            hooks.free(pool, addr)
        assert f"0x{addr:x}" in str(info.value)
        after = pool.stats()
        assert after.errors["MP_EDOUBLEFREE"] == before.errors["MP_EDOUBLEFREE"] + 1
        assert after.error_total == before.error_total + 1
        assert after.free_count == before.free_count
    assert pool.check() == 0


def test_foreign_pointer(pool):
    outside = np.empty(1000, np.uint8)        # numpy's default allocator
    with pytest.raises(ForeignPointer):
        hooks.free(pool, outside.ctypes.data)
    other = mempool.Pool()
    addr = hooks.alloc(other, 64)
    with pytest.raises(ForeignPointer):
        hooks.free(pool, addr)
    hooks.free(other, addr)                   # untouched by the failed free
    assert _errors(pool, "MP_EFOREIGN") == 2
    assert _errors(other, "MP_EFOREIGN") == 0


@pytest.mark.parametrize("size, offset", [(1000, 16), (100000, 4096), (100000, 64)])
def test_interior_pointer(pool, size, offset):
    addr = hooks.alloc(pool, size)
    with pytest.raises(InteriorPointer):
        hooks.free(pool, addr + offset)
    assert _errors(pool, "MP_EINTERIOR") == 1
    assert pool.stats().live_bytes == size    # the block is still live
    hooks.free(pool, addr)
    assert pool.stats().live_bytes == 0


@pytest.mark.parametrize("size", [48, 200000])
def test_size_mismatch_on_free_and_realloc(pool, size):
    addr = hooks.alloc(pool, size)
    hooks.write(pool, addr, b"keep")
    with pytest.raises(SizeMismatch) as info:
        hooks.free(pool, addr, size + 1)
    assert f"{size + 1} bytes" in str(info.value)
    with pytest.raises(SizeMismatch):
        hooks.realloc(pool, addr, size - 1, size * 2)
    assert hooks.read(pool, addr, 4) == b"keep"
    assert _errors(pool, "MP_ESIZE") == 2
    hooks.free(pool, addr, size)              # the right size works
    assert pool.stats().live_bytes == 0


def test_calloc_overflow(pool):
    with pytest.raises(SizeOverflow) as info:
        hooks.calloc(pool, 2 ** 62, 8)
    assert isinstance(info.value, OverflowError)
    assert _errors(pool, "MP_EOVERFLOW") == 1
    assert pool.stats().live_bytes == 0


def test_bad_alignment(pool):
    with pytest.raises(InvalidAlignment):
        hooks.alloc(pool, 64, align=48)
    addr = hooks.alloc(pool, 64, align=4096)
    assert addr % 4096 == 0
    hooks.free(pool, addr)


def test_debug_read_write_stay_inside_blocks(pool):
    addr = hooks.alloc(pool, 100)
    with pytest.raises(SizeMismatch):
        hooks.read(pool, addr, hooks.usable_size(pool, addr) + 1)
    with pytest.raises(ForeignPointer):
        hooks.write(pool, addr + 8, b"x")
    hooks.free(pool, addr)


def test_capacity_exhaustion_raises_pool_exhausted_and_recovers():
    pool = mempool.Pool(capacity=64 * MiB)
    keep = pool.empty(8 * MiB, np.uint8)
    for make in (pool.empty, pool.zeros, pool.ones):
        with pytest.raises(PoolExhausted) as info:
            make(128 * MiB, np.uint8)
        exc = info.value
        assert exc.requested == 128 * MiB
        assert exc.capacity == 64 * MiB
        assert exc.live_bytes == 8 * MiB
        for n in (128 * MiB, 64 * MiB, 8 * MiB):
            assert f"{n} bytes" in str(exc)
    assert isinstance(exc, MemoryError)
    assert pool.stats().live_bytes == 8 * MiB
    more = pool.empty(16 * MiB, np.uint8)     # still usable afterwards
    more[:] = 1
    assert pool.check() == 0
    del keep, more
    assert pool.stats().live_bytes == 0


@pytest.mark.parametrize("capacity", [64 * MiB, 256 * MiB])
def test_capacity_is_shared_by_all_sizes(capacity):
    # 9 MiB live in a pool of 64+ MiB: small, large and huge requests must
    # all fit (the capacity bounds the pool, not one of its heaps).
    pool = mempool.Pool(capacity=capacity)
    arrays = [pool.empty(n, np.uint8) for n in (8 * MiB, MiB, 1000, 40000)]
    assert pool.stats().live_bytes == sum(a.nbytes for a in arrays)
    del arrays


def test_capacity_exhaustion_by_many_blocks():
    pool = mempool.Pool(capacity=32 * MiB)
    arrays = []
    with pytest.raises(PoolExhausted) as info:
        for _ in range(100):
            arrays.append(pool.empty(MiB, np.uint8))
    assert 0 < len(arrays) <= 32
    assert info.value.live_bytes == len(arrays) * MiB
    del arrays
    gc.collect()
    assert pool.stats().live_bytes == 0
    again = [pool.empty(3 * MiB, np.uint8) for _ in range(9)]  # reusable again
    assert pool.stats().live_bytes == 27 * MiB
    del again


def test_debug_alloc_over_capacity():
    pool = mempool.Pool(capacity=16 * MiB)
    with pytest.raises(PoolExhausted) as info:
        hooks.alloc(pool, 64 * MiB)
    assert info.value.requested == 64 * MiB and info.value.capacity == 16 * MiB


@pytest.mark.parametrize("args, exc", [
    ((-1,), ValueError),
    (((3, -2),), ValueError),
    (((2 ** 40, 2 ** 40),), ValueError),
    ((10, "no-such-dtype"), TypeError),
    (("abc",), TypeError),
    ((3.5,), TypeError),
    ((10, float, "Z"), ValueError),
])
def test_bad_array_requests_are_numpy_errors_and_leak_nothing(pool, args, exc):
    for make in (pool.empty, pool.zeros):
        with pytest.raises(exc):
            make(*args)
    assert pool.stats().live_bytes == 0
    assert pool.stats().error_total == 0


def test_bad_free_from_numpy_warns_once_and_is_counted(pool):
    a = pool.empty(1000, np.uint8)
    hooks.free(pool, a.ctypes.data)           # free it behind numpy's back
    with pytest.warns(RuntimeWarning, match="MP_EDOUBLEFREE"):
        del a
        gc.collect()
    assert _errors(pool, "MP_EDOUBLEFREE") == 1
    b = pool.empty(5000, np.uint8)
    hooks.free(pool, b.ctypes.data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # a second warning would raise
        del b
        gc.collect()
    assert _errors(pool, "MP_EDOUBLEFREE") == 2
    assert pool.stats().live_bytes == 0


def test_bad_free_warning_turned_error_goes_to_unraisablehook(pool, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    a = pool.empty(100, np.uint8)
    hooks.free(pool, a.ctypes.data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del a                                 # must not raise here
        gc.collect()
    assert len(seen) == 1
    assert issubclass(seen[0].exc_type, RuntimeWarning)
    assert "MP_EDOUBLEFREE" in str(seen[0].exc_value)
    assert _errors(pool, "MP_EDOUBLEFREE") == 1
