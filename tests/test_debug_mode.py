"""Debug mode: canaries after each block, write-after-free checks on reuse,
reports that name the block, and how it is turned on (argument, env)."""
import ctypes
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mempool
from mempool import Pool
from mempool.errors import MP_ECORRUPT, HeapCorruption, HeapCorruptionWarning, error_from_code
from mempool import _testhooks as hooks

KiB, MiB = 1 << 10, 1 << 20


def _corrupt(pool):
    return pool.stats().errors["MP_ECORRUPT"]


@pytest.mark.corrupts_memory
@pytest.mark.parametrize("nbytes, where", [(100, "size class"), (48 * KiB, "large block"),
                                           (300 * MiB, "direct mapping")])
def test_overrun_past_an_array_warns_naming_the_block(nbytes, where):
    pool = Pool(debug=True)
    a = pool.empty(nbytes, np.uint8)
    addr = a.ctypes.data
    ctypes.memset(addr + nbytes, 0, 1)          # one byte past the end
    with pytest.warns(HeapCorruptionWarning) as seen:
        del a                                   # numpy's free finds it
    msg = str(seen[0].message)
    assert f"0x{addr:x}" in msg and f"({nbytes} bytes)" in msg and where in msg
    assert "canary" in msg and f"block offset {nbytes}" in msg
    report = seen[0].message.report
    assert report["address"] == addr and report["requested"] == nbytes
    assert report["region_base"] + report["offset"] == addr
    assert _corrupt(pool) == 1
    assert pool.stats().live_bytes == 0         # the block was freed anyway
    assert pool.check() == 0


@pytest.mark.corrupts_memory
def test_check_counts_a_broken_canary_of_a_live_block():
    pool = Pool(debug=True)
    a = pool.zeros(1000, np.uint8)
    ctypes.memset(a.ctypes.data + 1000, 0x41, 3)
    with pytest.warns(HeapCorruptionWarning, match="canary"):
        assert pool.check() == 1
    with pytest.warns(HeapCorruptionWarning):
        del a
    assert pool.check() == 0


@pytest.mark.corrupts_memory
def test_check_named_says_what_broke():
    pool = Pool(debug=True)
    assert pool.check_named() == (0, [])
    a = pool.zeros(1000, np.uint8)
    ctypes.memset(a.ctypes.data + 1000, 0x41, 3)
    with pytest.warns(HeapCorruptionWarning, match="canary"):
        assert pool.check_named() == (1, ["debug: a live block's canary is broken"])
    with pytest.warns(HeapCorruptionWarning):
        del a
    assert pool.check_named() == (0, [])


@pytest.mark.corrupts_memory
def test_write_after_free_is_reported_when_the_block_is_reused():
    pool = Pool(debug=True)
    addr = hooks.alloc(pool, 256)
    hooks.free(pool, addr, 256)
    ctypes.memset(addr + 10, 0x00, 1)           # stale pointer writes
    with pytest.warns(HeapCorruptionWarning, match="written to while it was free") as seen:
        again = hooks.alloc(pool, 256)
    assert again == addr and seen[0].message.report["bad_offset"] == 10
    assert hooks.read(pool, again, 4) == b"\xab" * 4   # handed out fresh
    hooks.free(pool, again, 256)
    assert _corrupt(pool) == 1 and pool.check() == 0


def test_healthy_debug_pool_is_silent_and_keeps_content():
    pool = Pool(debug=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays = [pool.empty(n, np.uint8) for n in (0, 1, 63, 64, 4096, 40000, 5 * MiB)]
        for i, a in enumerate(arrays):
            a[:] = i
        assert all((a == i).all() for i, a in enumerate(arrays))
        z = pool.zeros(12345, np.uint8)
        assert not z.any()
        grown = np.resize(z, 100000)             # realloc through numpy
        del arrays, a, z, grown
    assert _corrupt(pool) == 0 and pool.stats().live_bytes == 0
    assert pool.config["debug"] is True


def test_debug_off_costs_no_canary():
    pool = Pool(debug=False)
    addr = hooks.alloc(pool, 100)
    assert hooks.usable_size(pool, addr) >= 100
    hooks.free(pool, addr, 100)
    assert pool._corruption_reports() == []


def test_env_turns_debug_on_for_pools_without_an_argument(monkeypatch):
    monkeypatch.setenv("MEMPOOL_DEBUG", "1")
    assert Pool().config["debug"] is True
    assert Pool(debug=False).config["debug"] is False
    monkeypatch.setenv("MEMPOOL_DEBUG", "0")
    assert Pool().config["debug"] is False


def test_env_reaches_the_default_pool():
    code = "import mempool; print(mempool.default_pool().config['debug'])"
    env = dict(os.environ, MEMPOOL_DEBUG="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"


def test_corruption_code_maps_to_an_exception():
    exc = error_from_code(MP_ECORRUPT, address=0x1000, size=8)
    assert isinstance(exc, HeapCorruption) and isinstance(exc, RuntimeError)
    assert "MP_ECORRUPT" in str(exc) and "0x1000" in str(exc)
    assert mempool._core.error_name(exc.code) == "MP_ECORRUPT"
