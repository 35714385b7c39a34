"""mempool.arrow: Arrow's buffers in a mempool pool.

Where the adapter replaces Arrow's process-wide default (install, the
redirect of arrow::default_memory_pool()), the test runs in a subprocess:
that change lasts as long as the process.  The adapter is built on first
use into the user's cache (a C++ compile, once per pyarrow version).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mempool

from arrow_helpers import ROOT, TIMEOUT, _env, last_json, run_py  # noqa: E402

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def adapter_module():
    from mempool.arrow import _build
    return _build.load()


# ------------------------------------------------------------- in process --

def test_memory_pool_serves_arrow_buffers_and_counts_them(adapter_module):
    pool = mempool.Pool()
    pa_pool = mempool.arrow.memory_pool(pool)
    assert pa_pool is mempool.arrow.memory_pool(pool)        # one per pool
    assert pa_pool.backend_name == "mempool"
    before = pool.stats()
    assert before.arrow.bytes_allocated == 0
    strings = pa.array([f"row-{i}" for i in range(100_000)], memory_pool=pa_pool)
    # int64 -> int32: a copy (a plain int64 array would be numpy's memory, zero-copy)
    numbers = pa.array(np.arange(2_000_000), type=pa.int32(), memory_pool=pa_pool)
    upper = pa.compute.utf8_upper(strings, memory_pool=pa_pool)
    st = pool.stats()
    held = sum(b.size for arr in (strings, numbers, upper) for b in arr.buffers() if b)
    assert st.arrow.bytes_allocated >= held > 8_000_000
    assert st.arrow.bytes_allocated == pa_pool.bytes_allocated()
    assert st.live_bytes >= st.arrow.bytes_allocated             # the pool holds them
    assert st.arrow.max_memory >= st.arrow.bytes_allocated
    assert upper[5].as_py() == "ROW-5"
    assert all(b.address % 64 == 0 for b in numbers.buffers() if b is not None)
    del strings, numbers, upper
    st = pool.stats()
    assert st.arrow.bytes_allocated == 0 and st.arrow.errors == 0
    assert st.arrow.frees > 0 and st.arrow.num_allocations > 0
    assert mempool.arrow.share(pool) == {k: getattr(st.arrow, k) for k in mempool.arrow.share(pool)}
    assert pool.check() == 0
    assert "arrow" in st.as_dict()


def test_capacity_refusal_is_arrows_out_of_memory(adapter_module):
    pool = mempool.Pool(capacity=32 << 20)
    pa_pool = mempool.arrow.memory_pool(pool)
    small = pa.array(np.arange(1000), type=pa.int32(), memory_pool=pa_pool)
    with pytest.raises(pa.ArrowMemoryError, match=r"capacity 33554432") as info:
        pa.array(np.zeros(16 << 20), type=pa.float32(), memory_pool=pa_pool)   # 64 MiB
    assert isinstance(info.value, MemoryError)
    assert pool.stats().arrow.refused >= 1
    assert small.sum().as_py() == 499500                   # still fine
    adapter = pool._arrow
    with pytest.raises(pa.ArrowMemoryError):
        adapter._test_allocate(1 << 40)
    with pytest.raises(pa.ArrowInvalid, match="negative"):
        adapter._test_allocate(-1)


def test_resident_limit_refusal_is_out_of_memory(adapter_module):
    pool = mempool.Pool(resident_limit=16 << 20)
    pa_pool = mempool.arrow.memory_pool(pool)
    with pytest.raises(pa.ArrowMemoryError, match="resident limit 16777216"):
        pa.array(np.ones(8 << 20), type=pa.float32(), memory_pool=pa_pool)   # 32 MiB


def test_bad_frees_from_arrow_are_counted_and_warned_never_fatal(adapter_module):
    pool = mempool.Pool()
    adapter = mempool.arrow.memory_pool(pool) and pool._arrow
    errors_before = pool.stats().error_total
    addr = adapter._test_allocate(1000)
    adapter._test_free(addr, 1000)
    with pytest.warns(RuntimeWarning, match="MP_EDOUBLEFREE"):
        adapter._test_free(addr, 1000)                      # double free
        _let_pending_calls_run()
    foreign = np.zeros(100_000)                              # numpy's own allocator
    adapter._test_free(foreign.ctypes.data, foreign.nbytes)   # counted, no second warning
    _let_pending_calls_run()
    interior = adapter._test_allocate(4096)
    adapter._test_free(interior + 64, 4032)
    with pytest.raises(pa.ArrowInvalid, match="MP_EFOREIGN"):
        adapter._test_reallocate(foreign.ctypes.data, foreign.nbytes, 2 * foreign.nbytes)
    st = pool.stats()
    assert st.arrow.errors == 4
    assert st.error_total - errors_before == 4                 # the core counted them too
    assert st.arrow.bytes_allocated == 4096                    # interior's block still live
    adapter._test_free(interior, 4096)
    assert pool.stats().arrow.bytes_allocated == 0
    assert foreign.sum() == 0 and pool.check() == 0


def _let_pending_calls_run():
    # Py_AddPendingCall runs at the main thread's next check of the eval loop
    for _ in range(1000):
        pass


def test_wrong_size_on_free_is_caught(adapter_module):
    pool = mempool.Pool()
    adapter = mempool.arrow.memory_pool(pool) and pool._arrow
    addr = adapter._test_allocate(1000)
    with pytest.warns(RuntimeWarning, match="MP_ESIZE"):
        adapter._test_free(addr, 999)
        _let_pending_calls_run()
    assert pool.stats().arrow.bytes_allocated == 1000           # not freed
    adapter._test_free(addr, 1000)
    assert pool.stats().arrow.errors == 1 and pool.check() == 0


@pytest.mark.parametrize("alignment", [64, 128, 4096, 1 << 21])
def test_alignment_and_reallocate_keep_content(adapter_module, alignment):
    pool = mempool.Pool()
    adapter = mempool.arrow.memory_pool(pool) and pool._arrow
    addr = adapter._test_allocate(3000, alignment)
    assert addr % alignment == 0
    data = np.frombuffer(bytes(range(256)) * 12, dtype=np.uint8)[:3000]
    view = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * 3000).from_address(addr))
    view[:] = data
    for new in (100_000, 5 << 20, 2000):
        addr = adapter._test_reallocate(addr, 3000 if new == 100_000 else old, new, alignment)
        old = new
        assert addr % alignment == 0
        got = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * 2000).from_address(addr))
        assert (got == data[:2000]).all()
    adapter._test_free(addr, 2000, alignment)
    st = pool.stats()
    assert st.arrow.bytes_allocated == 0 and st.arrow.reallocs == 3 and st.arrow.errors == 0
    assert pool.check() == 0


def test_zero_size_blocks(adapter_module):
    pool = mempool.Pool()
    adapter = mempool.arrow.memory_pool(pool) and pool._arrow
    a, b = adapter._test_allocate(0), adapter._test_allocate(0)
    assert a != b
    a = adapter._test_reallocate(a, 0, 100)
    adapter._test_free(a, 100)
    adapter._test_free(b, 0)
    assert pool.stats().arrow.errors == 0 and pool.stats().arrow.bytes_allocated == 0


def test_arrow_allocations_are_in_the_trace(adapter_module):
    from mempool import trace
    pool = mempool.Pool()
    pa_pool = mempool.arrow.memory_pool(pool)
    with trace.record(pool=pool) as rec:
        arr = pa.array(np.arange(200_000), type=pa.int32(), memory_pool=pa_pool)
        strings = pa.array(["x" * 10] * 1000, memory_pool=pa_pool)
        del arr, strings
    summary = rec.trace.summary()
    assert summary["requested_bytes"] >= 800_000
    assert summary["free"] >= 2 and summary["final_live_bytes"] == 0
    assert pool.stats().arrow.errors == 0


def test_arrow_allocations_are_in_the_history(adapter_module):
    """While a history records, Arrow's blocks take the handler's full path
    like numpy's: allocated, live with a site entry, then freed; a trace
    started and stopped meanwhile leaves the bypass on for the history."""
    from mempool import history, trace
    from mempool.history import OPS
    pool = mempool.Pool()
    pa_pool = mempool.arrow.memory_pool(pool)
    with history.record(pool, stacks=4) as rec:
        with trace.record(pool=pool, use=False):
            pass
        arr = pa.array(np.arange(200_000), type=pa.int32(), memory_pool=pa_pool)
        addr = arr.buffers()[1].address
        ev = rec.events()
        assert addr in ev["address"][ev["op"] == OPS.index("alloc")]
        assert addr in rec.live_sites()["address"]
        del arr
        ev = rec.events()
        assert addr in ev["address"][ev["op"] == OPS.index("free")]
        assert addr not in rec.live_sites()["address"]
    assert pool.stats().arrow.errors == 0


def test_trim_and_release_unused_give_arrow_pages_back(adapter_module):
    pool = mempool.Pool(decay=60)
    pa_pool = mempool.arrow.memory_pool(pool)
    arr = pa.array(np.ones(16 << 20), type=pa.float32(), memory_pool=pa_pool)  # 64 MiB
    del arr
    resident = pool.stats().resident_bytes
    assert resident >= 32 << 20
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa_pool)      # pyarrow's release_unused() acts on its default pool
    try:
        pa_pool.release_unused()                              # Arrow's ReleaseUnused: trim
    finally:
        pa.set_memory_pool(previous)
    assert pool.stats().resident_bytes < resident - (32 << 20)


def test_debug_mode_reports_arrow_overruns(adapter_module):
    pool = mempool.Pool(debug=True)
    adapter = mempool.arrow.memory_pool(pool) and pool._arrow
    addr = adapter._test_allocate(100)
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("writes into the block's poisoned tail on purpose")
    (np.ctypeslib.ctypes.c_uint8 * 1).from_address(addr + 100)[0] = 7   # past the end
    with pytest.warns(mempool.HeapCorruptionWarning):
        adapter._test_free(addr, 100)
        _let_pending_calls_run()
    assert pool.stats().errors["MP_ECORRUPT"] == 1


def test_version_mismatch_says_what_to_do(adapter_module, monkeypatch, tmp_path):
    from mempool.arrow import _build
    with pytest.raises(_build.ArrowVersionMismatch, match="python -m mempool.arrow build --force"):
        _build.check_versions(25000000, adapter_module.runtime_arrow_version(), tmp_path)
    _build.check_versions(26000001, 26000001, tmp_path)


def test_no_compiler_or_cython_is_a_clear_error(monkeypatch, tmp_path):
    from mempool.arrow import _build
    monkeypatch.setenv("MEMPOOL_ARROW_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(_build.ArrowAdapterError, match="apt-get install g"):
        _build.build()


# ---------------------------------------------- Arrow's default, subprocess --

PANDAS_WORKLOAD = """
    import json, os, sys, tempfile
    import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
    rng = np.random.default_rng(7)
    n = 60_000
    keys = pd.Series(rng.integers(0, 3000, n)).map(lambda i: f"customer-{i:05d}")
    df = pd.DataFrame({"key": keys, "city": rng.choice(["Oslo", "Lima", "Pune"], n),
                       "x": rng.random(n), "k": rng.integers(0, 100, n)})
    assert str(df["key"].dtype) == "str"
    out = {}
    out["groupby"] = df.groupby("key")["x"].sum()
    out["groupby_city"] = df.groupby(["city", "k"]).agg(n=("x", "size"), m=("x", "mean"))
    right = df[["key", "k"]].drop_duplicates("key").rename(columns={"k": "k2"})
    out["merge"] = df.merge(right, on="key", how="left")
    out["str"] = pd.DataFrame({"upper": df["key"].str.upper(),
                               "has": df["key"].str.contains("-00"),
                               "len": df["key"].str.len(),
                               "part": df["key"].str.split("-").str[1]})
    path = os.path.join(tempfile.mkdtemp(), "frame.parquet")
    df.to_parquet(path)
    back = pd.read_parquet(path)
    out["parquet"] = back
    out["to_pandas"] = pq.read_table(path).to_pandas()
    out["from_arrow"] = pa.Table.from_pandas(df).to_pandas()
"""


def test_pandas_workload_lands_in_the_pool_with_identical_results(tmp_path):
    check = textwrap.dedent("""
        import pickle, mempool, pyarrow as pa
        import mempool.arrow as ma
        pool = mempool.installed()
        assert pa.default_memory_pool().backend_name == "mempool"
        before = ma.default_backend_stats()
    """) + textwrap.dedent(PANDAS_WORKLOAD) + textwrap.dedent("""
        st = pool.stats()
        after = ma.default_backend_stats()
        pickle.dump(out, open(sys.argv[1], "wb"))
        print(json.dumps({"backend": after["backend_name"],
            "backend_new": after["num_allocations"] - before["num_allocations"],
            "backend_bytes": after["bytes_allocated"],
            "arrow_total": st.arrow.total_bytes_allocated, "arrow_now": st.arrow.bytes_allocated,
            "arrow_errors": st.arrow.errors, "errors": st.error_total,
            "live": st.live_bytes, "python_default": pa.total_allocated_bytes()}))
    """)
    proc = subprocess.run([sys.executable, "-c", check, str(tmp_path / "a")],
                          env=_env(MEMPOOL_INSTALL="1", MEMPOOL_ARROW="1"),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    figures = last_json(proc)
    plain = subprocess.run([sys.executable, "-c", textwrap.dedent(
        "import pickle, sys\n" + textwrap.dedent(PANDAS_WORKLOAD)
        + "\npickle.dump(out, open(sys.argv[1], 'wb'))\n"), str(tmp_path / "b")],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    assert plain.returncode == 0, plain.stderr
    # every Arrow allocation of the workload went to the pool
    assert figures["backend_new"] == 0, figures
    assert figures["backend_bytes"] == 0, figures
    assert figures["arrow_total"] > 10_000_000, figures
    assert figures["arrow_now"] == figures["python_default"]
    assert figures["live"] >= figures["arrow_now"] > 1_000_000
    assert figures["arrow_errors"] == 0 and figures["errors"] == 0
    import pickle
    ours, theirs = (pickle.load(open(tmp_path / n, "rb")) for n in "ab")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert type(ours[name]) is type(theirs[name])
        if isinstance(ours[name], pd.DataFrame):
            pd.testing.assert_frame_equal(ours[name], theirs[name], check_exact=True)
        else:
            pd.testing.assert_series_equal(ours[name], theirs[name], check_exact=True)


def test_install_waits_for_pyarrow_and_uninstall_gives_arrow_its_pool_back():
    proc = run_py("""
        import json, sys, mempool, mempool.arrow as ma
        pool = mempool.install(arrow=True)
        assert "pyarrow" not in sys.modules and ma.pending() is pool
        import os; assert os.environ["MEMPOOL_ARROW"] == "1"
        import pyarrow as pa, numpy as np
        assert ma.installed() is pool and ma.pending() is None
        assert pa.default_memory_pool().backend_name == "mempool"
        kept = pa.array(np.arange(1000), type=pa.int32())
        mempool.uninstall()
        assert ma.installed() is None and "MEMPOOL_ARROW" not in os.environ
        before = ma.default_backend_stats()
        assert pa.default_memory_pool().backend_name == before["backend_name"] != "mempool"
        other = pa.array(np.arange(1000), type=pa.int32())
        after = ma.default_backend_stats()
        del kept                              # back to the pool, through the redirect
        st = pool.stats().arrow
        print(json.dumps({"new": after["num_allocations"] - before["num_allocations"],
                          "arrow_now": st.bytes_allocated, "errors": st.errors}))
    """)
    figures = last_json(proc)
    assert figures == {"new": figures["new"], "arrow_now": 0, "errors": 0}
    assert figures["new"] >= 1


def test_blocks_from_before_the_install_go_back_to_arrows_backend():
    proc = run_py("""
        import json, mempool, mempool.arrow as ma, pyarrow as pa, numpy as np
        early = pa.array(np.arange(10_000), type=pa.int32())   # Arrow's own mimalloc
        grown = pa.BufferOutputStream()                     # a resizable buffer
        grown.write(b"x" * 1000)
        held = ma.default_backend_stats()["bytes_allocated"]
        assert held > 0
        pool = mempool.install(arrow=True)
        grown.write(b"y" * 1_000_000)                       # Reallocate: moves it
        buf = grown.getvalue()
        del early
        st = pool.stats().arrow
        b = ma.default_backend_stats()
        print(json.dumps({"held": held, "backend_now": b["bytes_allocated"],
                          "errors": st.errors, "core_errors": pool.stats().error_total,
                          "ok": buf.to_pybytes() == b"x" * 1000 + b"y" * 1_000_000}))
        mempool.uninstall()
    """)
    figures = last_json(proc)
    assert figures["ok"] and figures["errors"] == 0 and figures["core_errors"] == 0
    assert figures["backend_now"] < figures["held"]


def test_fork_child_uses_the_pool_for_arrow():
    proc = run_py("""
        import os, mempool, pyarrow as pa, numpy as np
        pool = mempool.install(arrow=True)
        parent = pa.array(np.arange(100_000), type=pa.int32())
        pid = os.fork()
        if pid == 0:
            t = pa.table({"a": np.arange(200_000), "s": [str(i) for i in range(200_000)]})
            ok = (pool.stats().arrow.bytes_allocated > 1_000_000
                  and parent.sum().as_py() == 4999950000 and pool.check() == 0)
            del t, parent
            os._exit(0 if ok and pool.stats().arrow.errors == 0 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        print("ok", parent.sum().as_py())
        mempool.uninstall()
    """)
    assert proc.stdout.split()[-2:] == ["ok", "4999950000"]


def test_run_arrow_reports_arrows_share(tmp_path):
    script = tmp_path / "work.py"
    script.write_text("import pandas as pd\n"
                      "df = pd.DataFrame({'s': [f'v{i}' for i in range(50000)]})\n"
                      "print(df['s'].str.upper().iloc[-1])\n")
    proc = subprocess.run([sys.executable, "-m", "mempool", "run", "--arrow", str(script)],
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "V49999"
    line = next(l for l in proc.stderr.splitlines() if l.strip().startswith("arrow"))
    assert "allocations" in line and "errors 0" in line


def test_startup_environment_installs_for_arrow_in_children():
    proc = run_py("""
        import subprocess, sys, mempool
        mempool.install(arrow=True)
        code = ("import mempool, pyarrow as pa; "
                "print(pa.default_memory_pool().backend_name, "
                "mempool.arrow.installed() is mempool.installed())")
        print(subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, check=True).stdout.strip())
        mempool.uninstall()
    """)
    assert proc.stdout.strip().splitlines()[-1] == "mempool True"


def test_startup_arrow_without_pyarrow_installs_numpy_only(monkeypatch, capsys):
    from mempool import _startup
    real = _startup.importlib.util.find_spec
    monkeypatch.setattr(_startup.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    monkeypatch.setenv("MEMPOOL_INSTALL", "1")
    monkeypatch.setenv("MEMPOOL_ARROW", "1")
    pool = _startup.install_from_environ()
    try:
        assert pool is mempool.installed() is not None
        assert "MEMPOOL_ARROW=1 ignored: pyarrow is not installed" in capsys.readouterr().err
        assert mempool.arrow.pending() is None
    finally:
        mempool.uninstall()
    monkeypatch.setenv("MEMPOOL_INSTALL", "1")         # uninstall() cleared it
    monkeypatch.setenv("MEMPOOL_ARROW", "maybe")
    assert _startup.install_from_environ() is None
    assert "MEMPOOL_ARROW='maybe': expected one of 1/0" in capsys.readouterr().err


def test_explicit_arrow_install_without_pyarrow_raises_before_changing_anything(monkeypatch):
    import mempool.arrow as ma
    monkeypatch.setattr(ma._install, "available", lambda: False)
    with pytest.raises(ma.ArrowAdapterError, match=r"pip install 'mempool\[arrow\]'"):
        mempool.install(arrow=True)
    assert mempool.installed() is None


def test_ray_and_dask_options():
    import mempool.ray
    env = mempool.ray.runtime_env(arrow=True, capacity=1 << 30)
    assert env["env_vars"]["MEMPOOL_ARROW"] == "1"
    assert "MEMPOOL_ARROW" not in mempool.ray.runtime_env()["env_vars"]
    dask = pytest.importorskip("mempool.dask")
    assert dask.MempoolPlugin(arrow=True).arrow is True


def test_a_pool_arrow_uses_cannot_be_closed(adapter_module):
    pool = mempool.Pool()
    mempool.arrow.memory_pool(pool)
    with pytest.raises(mempool.PoolBusy, match="Arrow uses it"):
        pool.close()
    assert pool.trim() >= 0


def test_cli_build_and_info(adapter_module):
    proc = run_py("import sys, mempool.arrow.__main__ as m; sys.exit(m.main(['info']))")
    info = json.loads(proc.stdout)
    assert info["built"] is True and info["pyarrow"] == pa.__version__
    assert info["build"]["pyarrow"] == pa.__version__
    proc = run_py("import sys, mempool.arrow.__main__ as m; sys.exit(m.main(['build']))")
    assert proc.stdout.strip().endswith(".so")


def _worker_arrow_probe():
    import pandas
    import pyarrow

    import mempool
    frame = pandas.DataFrame({"s": [f"row-{i}" for i in range(20_000)]})
    upper = frame["s"].str.upper()
    share = mempool.installed().stats().arrow
    return (pyarrow.default_memory_pool().backend_name, share.bytes_allocated > 0,
            share.errors, upper.iloc[-1])


def test_dask_plugin_puts_worker_arrow_buffers_in_the_pool():
    distributed = pytest.importorskip("distributed")
    from mempool.dask import MempoolPlugin
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  worker_dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster, timeout=120) as client:
        client.wait_for_workers(1, timeout=120)
        client.register_plugin(MempoolPlugin(arrow=True))
        result = client.submit(_worker_arrow_probe, pure=False).result(timeout=300)
        metrics = client.run(
            lambda dask_worker: dask_worker.metrics["mempool_arrow_bytes"](dask_worker))
    assert result == ("mempool", True, 0, "ROW-19999")
    assert all(value >= 0 for value in metrics.values())
