"""The resident limit (Pool(resident_limit=...)): cached free pages go back
before resident passes it, live memory beyond it is PoolExhausted with the
figures, bad values are named, and under a real cgroup memory limit a
workload that would be OOM-killed with the pool's cache completes."""
import math
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

import mempool
from mempool import InvalidArgument, Pool, PoolExhausted

MiB = 1 << 20


def test_cached_pages_go_back_before_the_limit():
    pool = Pool(resident_limit="64MiB", decay=math.inf, background_purge=False)
    assert pool.resident_limit == 64 * MiB and pool.config["resident_limit"] == 64 * MiB
    with mempool.use(pool):
        blocks = [np.ones(MiB, np.uint8) for _ in range(48)]   # page heap
        del blocks
        assert pool.stats().resident_bytes >= 48 * MiB          # cached (decay inf)
        big = np.ones(40 * MiB, np.uint8)                       # huge heap: fresh pages
    assert pool.stats().resident_bytes <= 64 * MiB
    assert pool.check() == 0
    del big


def test_live_memory_beyond_the_limit_is_pool_exhausted_with_the_figures():
    pool = Pool(resident_limit=64 * MiB, decay=math.inf, background_purge=False)
    a = pool.empty(40 * MiB, np.uint8)
    a[:] = 1
    with pytest.raises(PoolExhausted) as info:
        pool.empty(40 * MiB, np.uint8)
    err = info.value
    assert err.resident_limit == 64 * MiB and err.live_bytes == 40 * MiB
    assert "resident limit 64.0 MiB" in str(err) and "live 40.0 MiB" in str(err)
    assert pool.stats().resident_bytes <= 64 * MiB and pool.check() == 0
    del a


def test_limit_below_live_is_refused_and_nothing_changes():
    pool = Pool(resident_limit="64MiB")
    a = pool.empty(40 * MiB, np.uint8)
    with pytest.raises(InvalidArgument, match=r"16 MiB\) is below the 41943040 bytes \(40 MiB\) live"):
        pool.resident_limit = 16 * MiB
    assert pool.resident_limit == 64 * MiB
    pool.resident_limit = "48MiB"
    assert pool.resident_limit == 48 * MiB
    pool.resident_limit = None
    assert pool.resident_limit is None
    del a


@pytest.mark.parametrize("value, exc, text", [
    ("12x", ValueError, "resident_limit='12x'"),
    (4096, ValueError, "at least 2097152 bytes"),
    (-5, ValueError, "-5"),
    (1.5, TypeError, "1.5"),
])
def test_bad_values_are_named(value, exc, text):
    with pytest.raises(exc, match=text.replace(".", r"\.").replace("(", r"\(")):
        Pool(resident_limit=value)


def test_the_start_up_variable_sets_it():
    from mempool import _startup
    assert _startup.settings_from_environ({"MEMPOOL_RESIDENT_LIMIT": "1GiB"}) == \
        {"resident_limit": 1 << 30}
    assert _startup.settings_from_environ({"MEMPOOL_RESIDENT_LIMIT": "auto"}) == \
        {"resident_limit": "auto"}
    with pytest.raises(_startup.StartupConfigError, match="MEMPOOL_RESIDENT_LIMIT='lots'"):
        _startup.settings_from_environ({"MEMPOOL_RESIDENT_LIMIT": "lots"})


# ---- a real cgroup (v1 memory controller, or v2) --------------------------

WORKLOAD = textwrap.dedent("""
    import math, sys
    with open(sys.argv[1], "w") as f:        # join the test's cgroup first
        f.write("0")
    import numpy as np, mempool
    limit = None if sys.argv[2] == "none" else "auto"
    pool = mempool.Pool(resident_limit=limit, decay=math.inf, background_purge=False)
    with mempool.use(pool):
        cache, pins = [], []
        for _ in range(300):                      # 300 MiB of 1 MiB blocks, each pinned
            cache.append(np.ones(1 << 20, np.uint8))
            pins.append(np.ones(40 << 10, np.uint8))              # by a live 40 KiB one
        del cache                                 # 1 MiB holes, kept (decay inf)
        live = [np.ones(100 << 20, np.uint8) for _ in range(4)]   # 400 MiB live: no hole fits
        total = sum(int(a.sum()) for a in live)
    print("done", total, pool.resident_limit, pool.stats().peak_resident_bytes)
""")


def _own_memory_cgroup():
    """(directory to make a child cgroup in, limit file, extra files) or None."""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory" + path
            if os.path.isfile(os.path.join(base, "memory.limit_in_bytes")):
                return base, "memory.limit_in_bytes", ["memory.memsw.limit_in_bytes"]
    for line in lines:
        if line.startswith("0::"):
            base = "/sys/fs/cgroup" + line[3:]
            if os.path.isfile(os.path.join(base, "cgroup.controllers")) and \
                    "memory" in open(os.path.join(base, "cgroup.controllers")).read():
                return base, "memory.max", ["memory.swap.max"]
    return None


@pytest.fixture
def cgroup_512m():
    found = _own_memory_cgroup()
    if found is None:
        pytest.skip("no cgroup memory controller (v1 or v2) for this process")
    base, limit_file, extras = found
    path = os.path.join(base, f"mempool-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(512 * MiB))
    except OSError as exc:
        pytest.skip(f"cannot make a child memory cgroup in {base}: {exc}")
    for extra in extras:   # no swap: over the limit means the OOM killer
        try:
            with open(os.path.join(path, extra), "w") as f:
                f.write(str(512 * MiB) if extra.endswith("memsw.limit_in_bytes") else "0")
        except OSError:
            pass
    yield path
    for _ in range(50):    # the child has exited; its charge drains
        try:
            os.rmdir(path)
            break
        except OSError:
            import time
            time.sleep(0.1)


def _run_in(cgroup, limit):
    procs = os.path.join(cgroup, "cgroup.procs")
    return subprocess.run([sys.executable, "-c", WORKLOAD, procs, limit],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.environ.get("LD_PRELOAD", "").find("asan") >= 0,
                    reason="ASan's shadow memory does not fit a 512 MiB cgroup")
def test_resident_limit_keeps_a_cgroup_process_alive(cgroup_512m):
    proc = _run_in(cgroup_512m, "auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, total, limit, peak = proc.stdout.split()
    assert int(total) == 400 * MiB
    assert 256 * MiB < int(limit) < 512 * MiB          # the cgroup limit, less the process
    assert int(peak) <= int(limit)
    # the same workload without the limit: the pool's cache gets it OOM-killed
    proc = _run_in(cgroup_512m, "none")
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-500:])
