"""Pool(mesh=True): compaction without moving (Mesh, PLDI 2019) seen from numpy.

The issue's pattern: many arrays of 64 B - 4 KiB, a random 10% kept, then an
idle period: the background purger meshes the slabs the survivors pin, so
resident memory falls to <= 1.5x live without trim(), and every survivor
keeps its content.  Also: the setting's spellings, its environment
variable, a thread writing into survivors while trim() meshes, and fork.
"""
import os
import threading
import time

import numpy as np
import pytest

import mempool
from mempool import Pool
from mempool import _environ, _startup


def _scatter(pool, n, seed=0):
    """n arrays of 64 B - 4 KiB from `pool`; a random 10% kept, each filled
    with its own bytes.  Returns the survivors and their expected contents."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(64, 4097, size=n)
    keep = rng.random(n) < 0.1
    kept, expected = [], []
    with mempool.use(pool):
        arrays = [np.empty(int(s), dtype=np.uint8) for s in sizes]
    for i, (a, k) in enumerate(zip(arrays, keep)):
        a[:] = (np.arange(a.size) * 7 + i) % 251
        if k:
            kept.append(a)
            expected.append(a.copy())
    del arrays
    return kept, expected


def test_mesh_is_off_by_default_and_settable():
    assert Pool().config["mesh"] is False
    assert Pool(mesh=True).config["mesh"] is True
    assert Pool(mesh=True, debug=True).config["mesh"] is False  # fill patterns need private pages
    with pytest.raises(TypeError, match="mesh='yes': expected True or False"):
        Pool(mesh="yes")


def test_mesh_environment_variable_round_trip():
    settings = _startup.settings_from_environ({"MEMPOOL_MESH": "1"})
    assert settings == {"mesh": True}
    assert _environ.pool_settings(Pool(mesh=True))["mesh"] is True
    assert _environ.environ_from_settings({"mesh": True})["MEMPOOL_MESH"] == "1"
    with pytest.raises(_environ.StartupConfigError, match="MEMPOOL_MESH"):
        _startup.settings_from_environ({"MEMPOOL_MESH": "maybe"})


def test_scattered_survivors_mesh_while_idle():
    """The issue's pattern, at its size: resident <= 1.5x live after an idle
    period, without trim(); every survivor intact."""
    pool = Pool(mesh=True, decay=0.2)
    kept, expected = _scatter(pool, 200_000)
    ratio = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.25)
        st = pool.stats()
        ratio = st.resident_bytes / st.live_bytes
        if ratio <= 1.5 and st.mesh_pages > 0:
            break
    st = pool.stats()
    assert ratio is not None and ratio <= 1.5, (ratio, st.mesh_pages, st.resident_bytes)
    assert st.mesh_bytes_saved == st.mesh_pages * 4096 > 0
    assert st.mesh_pause_max_ns > 0 and st.mesh_calls > 0
    assert all(np.array_equal(a, e) for a, e in zip(kept, expected))
    assert pool.check() == 0
    del kept, expected


def test_writer_thread_loses_no_write_while_trim_meshes():
    pool = Pool(mesh=True, decay=float("inf"))
    kept, _ = _scatter(pool, 50_000, seed=1)
    stop = threading.Event()
    rounds = [0]

    def writer():
        while not stop.is_set():
            for a in kept:
                a[:8] += 1
            rounds[0] += 1

    t = threading.Thread(target=writer)
    before = [a[:8].copy() for a in kept]
    t.start()
    while rounds[0] < 1:
        time.sleep(0.001)
    for _ in range(5):
        pool.trim()
    stop.set()
    t.join()
    assert pool.stats().mesh_pages_total > 0
    n = np.uint8(rounds[0] % 256)
    assert all(np.array_equal(a[:8], (b + n).astype(np.uint8)) for a, b in zip(kept, before))
    assert pool.check() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_writes_stay_in_child():
    pool = Pool(mesh=True, decay=float("inf"))
    kept, expected = _scatter(pool, 30_000, seed=2)
    pool.trim()
    assert pool.stats().mesh_pages > 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = all(np.array_equal(a, e) for a, e in zip(kept, expected))
        for a in kept:
            a[:] = 0
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    assert all(np.array_equal(a, e) for a, e in zip(kept, expected))
