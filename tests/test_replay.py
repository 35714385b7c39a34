"""mempool.tools.replay and the C replay engine: shipped traces, both backends."""
import numpy as np
import pytest

import mempool
from mempool import trace as tr
from mempool.tools import replay
from mempool.tools._replay import ReplayState

MIB = 1 << 20


@pytest.fixture(scope="module")
def shipped():
    return {name: tr.load(replay.resolve_trace(name)) for name in ("mlp", "temporaries")}


@pytest.mark.parametrize("name", ["mlp", "temporaries"])
def test_pool_replay_reproduces_the_recorded_run(shipped, name):
    t = shipped[name]
    s = t.summary()
    pool = mempool.Pool()
    res = replay.replay_here(t, pool)
    assert res["bad_events"] == 0 and res["failed"] == 0
    assert res["ops"] == s["events"]
    assert res["peak_live_bytes"] == s["peak_live_bytes"]        # exactly
    assert res["live_bytes"] == s["final_live_bytes"]
    # the pool's own counter may lag by its per-thread batching (64 KiB)
    assert abs(res["pool_peak_live"] - s["peak_live_bytes"]) <= 64 << 10
    # the in-process run that recorded the trace, same pool settings
    recorded = t.meta["pool_peak_resident_bytes"]
    assert abs(res["pool_peak_resident"] / recorded - 1) <= 0.10
    assert res["rss_peak_delta"] >= 0.9 * s["peak_live_bytes"]  # pages were written
    assert pool.check() == 0
    assert pool.stats().live_bytes == 0                         # released


def test_malloc_backend_replays_the_same_events(shipped):
    t = shipped["mlp"]
    res = replay.replay_here(t, None)
    assert res["bad_events"] == 0 and res["failed"] == 0
    assert res["peak_live_bytes"] == t.summary()["peak_live_bytes"]
    assert "pool_peak_resident" not in res


def test_blocks_stay_live_until_release():
    ev = np.zeros(3, dtype=tr.EVENT_DTYPE)
    ev["op"] = [tr.ALLOC, tr.CALLOC, tr.REALLOC]
    ev["id"] = [0, 1, 0]
    ev["size"] = [MIB, 3 * MIB, 2 * MIB]
    pool = mempool.Pool()
    state = ReplayState(2, pool)
    res = state.run(ev.tobytes())
    assert res["peak_live_bytes"] == 5 * MIB and res["live_blocks"] == 2
    assert pool.stats().live_bytes == 5 * MIB
    # a second run continues from the live blocks: free both
    ev2 = np.zeros(2, dtype=tr.EVENT_DTYPE)
    ev2["op"], ev2["id"] = tr.FREE, [0, 1]
    assert state.run(ev2.tobytes())["live_bytes"] == 0
    assert state.release() == 0
    assert pool.stats().live_bytes == 0


def test_bad_events_are_counted_not_performed():
    ev = np.zeros(4, dtype=tr.EVENT_DTYPE)
    ev["op"] = [tr.FREE, tr.ALLOC, tr.ALLOC, 9]
    ev["id"] = [0, 7, 0, 0]       # free before alloc, id out of range, ok, bad op
    ev["size"] = [0, 10, 100, 0]
    pool = mempool.Pool()
    state = ReplayState(2, pool)
    res = state.run(ev.tobytes())
    assert res["bad_events"] == 3 and res["ops"] == 1 and res["live_bytes"] == 100
    assert state.release() == 1
    with pytest.raises(ValueError, match="multiple of 24"):
        state.run(b"x" * 25)


def test_replay_into_a_closed_pool_is_refused():
    pool = mempool.Pool()
    state = ReplayState(1, pool)
    pool.close()
    with pytest.raises(mempool.errors.PoolClosed):
        state.run(b"")


def test_unknown_trace_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="mlp"):
        replay.resolve_trace("no-such-trace")
    assert replay.resolve_trace("mlp").name == "mlp.trace"


def test_ratios_are_relative_to_the_malloc_row():
    rows = [{"allocator": "malloc", "status": "ok", "peak_live_bytes": 100,
             "rss_peak_delta": 110, "ns_per_op": 50.0, "resident_final": 20,
             "live_bytes": 10},  # a few leftover bytes: no ratio
            {"allocator": "mempool", "status": "ok", "peak_live_bytes": 100,
             "rss_peak_delta": 105, "ns_per_op": 25.0, "resident_final": 11 * MIB,
             "live_bytes": 10 * MIB, "pool_peak_resident": 104},
            {"allocator": "tcmalloc", "status": "skipped", "reason": "not installed"}]
    out = replay.add_ratios(rows)
    assert out[0]["time_ratio"] == 1.0 and out[1]["time_ratio"] == 0.5
    assert out[1]["peak_rss_ratio"] == pytest.approx(1.05)
    assert out[1]["pool_peak_ratio"] == pytest.approx(1.04)
    assert out[1]["final_ratio"] == pytest.approx(1.1)
    assert out[0]["final_ratio"] is None
    assert "time_ratio" not in out[2]
