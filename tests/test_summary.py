"""The memory summary (str(pool.stats()), Pool.memory_summary()), reset_peak,
per-layer figures, errors that explain, and the exit reports
(MEMPOOL_SHOW_STATS, run --summary, run --history)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mempool
from mempool import history
from mempool.snapshot import load


def test_summary_is_a_table_with_the_figures():
    pool = mempool.Pool()
    with mempool.use(pool):
        small = [np.ones(10) for _ in range(100)]
        big = np.ones((1100, 1000))
        text = pool.memory_summary()
    st = pool.stats()
    assert str(st).splitlines()[3:] == text.splitlines()[3:]   # same table
    for word in ("live (requested)", "resident", "reserved", "small classes",
                 "page heap", "huge-page heap", "direct maps", "fragmentation",
                 "meshing", "given back", "errors caught"):
        assert word in text, word
    assert mempool.stats.format_bytes(st.peak_live_bytes) in text
    assert len(text.splitlines()) < 30 and max(map(len, text.splitlines())) <= 80
    del small, big


def test_layers_add_up():
    pool = mempool.Pool(huge_min=4 << 20)   # the 2 MiB-granule heap is opt-in
    with mempool.use(pool):
        small = [np.ones(100) for _ in range(50)]
        large = np.ones(100_000)
        huge = np.ones((1100, 1000))
        direct = np.empty(300 << 20, dtype=np.uint8)
        st = pool.stats()
    L = st.layers
    assert L["small"].live_bytes == sum(a.nbytes for a in small)
    assert L["pages"].live_bytes == large.nbytes and L["pages"].blocks == 1
    assert L["huge"].live_bytes == huge.nbytes and L["huge"].blocks == 1
    assert L["direct"].live_bytes == direct.nbytes and L["direct"].blocks == 1
    assert sum(l.live_bytes for l in L.values()) == st.live_bytes
    assert L["pages"].reserved_bytes + L["huge"].reserved_bytes + \
        L["direct"].reserved_bytes == st.reserved_bytes
    assert L["pages"].resident_bytes + L["huge"].resident_bytes + \
        L["direct"].resident_bytes == st.resident_bytes
    del small, large, huge, direct


def test_reset_peak_starts_the_peaks_over():
    pool = mempool.Pool()
    with mempool.use(pool):
        a = np.ones(1 << 20)
        del a
        keep = np.ones(1000)
    st = pool.stats()
    assert st.peak_live_bytes >= 8 << 20 and st.peak_resident_bytes >= 8 << 20
    pool.reset_peak()
    st = pool.stats()
    assert st.peak_live_bytes == st.live_bytes == keep.nbytes
    assert st.peak_resident_bytes == st.resident_bytes
    with mempool.use(pool):
        b = np.ones(1 << 18)
    st = pool.stats()
    assert st.peak_live_bytes == keep.nbytes + b.nbytes
    assert st.resident_bytes <= st.peak_resident_bytes
    del b


def test_pool_exhausted_explains_itself():
    pool = mempool.Pool(capacity=16 << 20)
    with history.record(pool):
        hold = pool.empty(9 << 20, dtype=np.uint8)
        small = [pool.ones(1000) for _ in range(10)]
        with pytest.raises(mempool.PoolExhausted) as info:
            pool.empty(64 << 20, dtype=np.uint8)
    e = info.value
    assert e.capacity == 16 << 20 and e.requested == 64 << 20
    assert e.live_bytes == hold.nbytes + sum(a.nbytes for a in small)
    assert e.cached_bytes is not None and e.largest_free_bytes is not None
    assert set(e.layers) == {"small", "pages", "huge", "direct"}
    assert e.top_sites and e.top_sites[0]["bytes"] == hold.nbytes
    assert e.top_sites[0]["site"].startswith("test_summary.py:")
    msg = str(e)
    for part in ("free cache", "largest hole", "by layer", "top call sites",
                 e.top_sites[0]["site"]):
        assert part in msg, part
    # without a history: the figures, no sites
    with pytest.raises(mempool.PoolExhausted) as info:
        pool.buffer(64 << 20)
    assert info.value.top_sites == [] and "largest hole" in str(info.value)
    del hold, small


def test_a_resident_limit_refusal_explains_itself():
    pool = mempool.Pool(resident_limit=8 << 20)
    keep = pool.ones(6 << 17)                        # 6 MiB
    with pytest.raises(mempool.PoolExhausted) as info:
        pool.ones(4 << 17)
    e = info.value
    assert e.resident_limit == 8 << 20 and e.live_bytes >= keep.nbytes
    assert "resident limit" in str(e) and "by layer" in str(e)


def _run(args, env=None, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, **(env or {})})


SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, sys
    import numpy as np
    def work(n):
        return float(np.ones(n).sum())
    if __name__ == "__main__":
        a = np.ones((300, 300))
        p = mp.get_context(sys.argv[1]).Pool(2)
        print(p.map(work, [1000, 2000]))
        p.close(); p.join()
""")


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_run_summary_and_history_reach_every_process(tmp_path, context):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run.json"
    r = _run(["-m", "mempool", "run", "--no-report", "--summary", "--history", str(out),
              str(script), context])
    assert r.returncode == 0, r.stderr
    summaries = [line for line in r.stderr.splitlines() if "mempool memory summary, pid" in line]
    pids = {line.split("pid ")[1].split(":")[0] for line in summaries}
    assert len(pids) >= 3, r.stderr                  # the program and its 2 workers
    assert any("prog.py" in line for line in summaries)
    snap = load(out)
    assert snap.history is not None and snap.history["events"]["count"] > 0
    children = sorted(tmp_path.glob("run-*.json"))
    assert len(children) >= 2
    assert all(load(c).data["process"]["pid"] != snap.data["process"]["pid"] for c in children)


def test_show_stats_with_the_startup_install(tmp_path):
    code = "import numpy as np; a = np.ones(1000); print('ok')"
    r = _run(["-c", code], env={"MEMPOOL_INSTALL": "1", "MEMPOOL_SHOW_STATS": "1",
                                "MEMPOOL_HISTORY": str(tmp_path / "h.json")})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    assert "mempool memory summary, pid" in r.stderr
    children = list(tmp_path.glob("h*.json"))
    assert len(children) == 1 and load(children[0]).history["events"]["count"] > 0


def test_run_history_to_a_missing_directory_is_a_clear_error(tmp_path):
    r = _run(["-m", "mempool", "run", "--history", str(tmp_path / "no" / "h.json"), "-c",
              "pass"])
    assert r.returncode == 2 and "no such directory" in r.stderr


def test_report_variables_are_on_the_settings_table():
    from mempool import _settings
    assert _settings.OPTIONS["show_stats"].flag == "--summary"
    assert _settings.OPTIONS["history"].env == "MEMPOOL_HISTORY"
    assert not _settings.unknown_variables({"MEMPOOL_SHOW_STATS": "1", "MEMPOOL_HISTORY": "x",
                                            "MEMPOOL_HISTORY_PID": "1"})
    r = _run(["-c", "import mempool; mempool.install(mempool.Pool())"],
             env={"MEMPOOL_SHOW_STATS": "maybe"})
    assert r.returncode != 0 and "MEMPOOL_SHOW_STATS='maybe'" in r.stderr, r.stderr
