"""mempool.history: events with call sites, the pool's own events, bounds,
threads, scopes, several pools, fork, tracemalloc, no GIL."""
import inspect
import os
import threading
import tracemalloc

import numpy as np
import pytest

import mempool
from mempool import _testhooks as hooks
from mempool import history
from mempool.history import OPS, POOL_EVENT_KINDS
from mempool.snapshot import describe_site, symbolize


def _line():
    return inspect.currentframe().f_back.f_lineno


def _addr(a):
    return a.__array_interface__["data"][0]


def _ops(ev, name):
    return ev["op"] == OPS.index(name)


def test_alloc_and_free_with_sites_and_sizes():
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, stacks=4) as rec:
        a = np.zeros(5000); line = _line()   # noqa: E702
        addr = _addr(a)
        del a
    ev = rec.events()
    allocs = np.flatnonzero(_ops(ev, "calloc") & (ev["address"] == addr))
    frees = np.flatnonzero(_ops(ev, "free") & (ev["address"] == addr))
    assert len(allocs) == 1 and len(frees) == 1 and allocs[0] < frees[0]
    assert ev["size"][allocs[0]] == ev["size"][frees[0]] == 5000 * 8
    # the free carries the site of the block it removes
    assert ev["stack"][allocs[0]] == ev["stack"][frees[0]] >= 0
    file, lineno, func = symbolize(int(ev["stack"][allocs[0]]))[0]
    assert (os.path.basename(file), lineno, func) == ("test_history.py", line,
                                                      "test_alloc_and_free_with_sites_and_sizes")
    assert len(symbolize(int(ev["stack"][allocs[0]]))) <= 4
    assert (ev["thread"] == threading.get_native_id()).all()
    assert not rec.recording and rec.info()["held"] == len(ev["op"])


def test_realloc_is_a_free_then_an_alloc():
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool) as rec:
        a = np.zeros(10)
        old = _addr(a)
        a.resize(100_000, refcheck=False)
        new = _addr(a)
    ev = rec.events()
    i = np.flatnonzero(_ops(ev, "realloc_free"))
    assert len(i) == 1
    i = i[0]
    assert ev["address"][i] == old and ev["size"][i] == 80
    assert _ops(ev, "realloc")[i + 1] and ev["address"][i + 1] == new
    assert ev["size"][i + 1] == 800_000


def test_the_ring_is_bounded_and_counts_what_it_dropped():
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, max_entries=100) as rec:
        for _ in range(1000):
            np.empty(10)
    info = rec.info()
    assert info["held"] == 100 and info["max_entries"] == 100
    assert info["recorded"] == 2000 and info["dropped"] == 1900
    ev = rec.events()
    assert (np.diff(ev["t_ns"].astype(np.int64)) >= 0).all()   # oldest first after wrapping
    snap = pool.snapshot()
    assert snap.history["dropped"] == 1900 and snap.history["events"]["count"] == 100


def test_sites_of_live_blocks_survive_the_ring():
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, max_entries=10) as rec:
        keep = np.ones(4000); line = _line()   # noqa: E702
        for _ in range(100):
            np.empty(3)
        top = rec.top_sites(5)
    assert top[0]["bytes"] == 32000 and top[0]["blocks"] == 1
    assert top[0]["site"].startswith(f"test_history.py:{line} ")
    del keep


def test_pool_events_are_recorded():
    pool = mempool.Pool(decay=0)
    with mempool.use(pool), history.record(pool) as rec:
        a = np.ones(3 << 20)
        del a
        pool.trim()
    pe = rec.pool_events()
    names = {mempool._core.event_names()[k] for k in pe["kind"].tolist()}
    assert {"arena_map", "purge"} <= names, names
    snap = pool.snapshot()
    kinds = {snap.history["pool_event_kinds"][k] for k in snap.history["pool_events"]["kind"]}
    assert {"arena_map", "purge"} <= kinds


def test_exhaustion_is_an_event_with_its_site():
    pool = mempool.Pool(capacity=8 << 20)
    with history.record(pool) as rec:
        with pytest.raises(mempool.PoolExhausted):
            pool.empty(64 << 20, dtype=np.uint8)
    pe = rec.pool_events()
    kinds = [mempool._core.event_names()[k] for k in pe["kind"].tolist()]
    assert "exhausted" in kinds
    i = kinds.index("exhausted")
    assert pe["size"][i] == 64 << 20 and pe["arg"][i] == 8 << 20
    assert describe_site(int(pe["stack"][i])).startswith("test_history.py:")


def test_a_moved_buffer_keeps_its_site():
    pool = mempool.Pool()
    with history.record(pool) as rec:
        first = pool.buffer(1 << 20)
        moved = pool.buffer(1 << 20); line = _line()   # noqa: E702
        first.free()
        before = pool.snapshot()
        pool.defragment()
        after = pool.snapshot()
    ev = rec.events()
    assert _ops(ev, "move_free").any() and _ops(ev, "move").any()
    i = np.flatnonzero(_ops(ev, "move"))[-1]
    assert describe_site(int(ev["stack"][i])) == (
        f"test_history.py:{line} in test_a_moved_buffer_keeps_its_site")
    b = after.blocks
    buf = np.flatnonzero(b["state"] == after.data["block_states"].index("buffer"))
    assert len(buf) == 1
    file, lineno, _ = after.user_frame(int(b["site"][buf[0]]))
    assert lineno == line
    del moved, before


def test_threads_each_have_their_events():
    pool = mempool.Pool()
    ids = []

    def work():
        ids.append(threading.get_native_id())
        with mempool.use(pool):
            for _ in range(50):
                np.ones(20)

    with history.record(pool) as rec:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ev = rec.events()
    assert set(ev["thread"].tolist()) == set(ids)
    assert (ev["stack"] >= 0).all()


def test_events_without_the_gil_have_no_stack():
    pool = mempool.Pool()
    with history.record(pool) as rec:
        addr = hooks.handler_malloc_nogil(pool, 256)
        hooks.handler_free_nogil(pool, addr, 256)
    ev = rec.events()
    assert list(ev["stack"]) == [-2, -2]
    assert rec.info()["no_gil"] == 2
    assert describe_site(-2).startswith("(a thread without the GIL")


def test_record_none_follows_use_and_install():
    pool = mempool.Pool()
    with mempool.use(pool):
        rec = history.record()
        assert rec.pool is pool
    other = mempool.Pool()
    mempool.install(other)
    try:
        assert history.record().pool is other
    finally:
        mempool.uninstall()


def test_two_pools_record_apart_and_one_at_a_time():
    p1, p2 = mempool.Pool(), mempool.Pool()
    with history.record(p1) as r1, history.record(p2) as r2:
        with mempool.use(p1):
            a = np.ones(10)
        with mempool.use(p2):
            b = np.ones(20)
            c = np.ones(30)
        with pytest.raises(RuntimeError, match="already being recorded"):
            history.record(p1).start()
    one, two = set(r1.events()["address"].tolist()), set(r2.events()["address"].tolist())
    assert _addr(a) in one and not {_addr(b), _addr(c)} & one
    assert {_addr(b), _addr(c)} <= two and _addr(a) not in two


def test_restart_forgets_and_stop_keeps_the_events():
    pool = mempool.Pool()
    rec = history.start(pool)
    with mempool.use(pool):
        np.ones(10)
    assert history.stop(pool) is rec and not rec.recording
    held = rec.info()["held"]
    with mempool.use(pool):
        np.ones(10)                               # not recorded
    assert rec.info()["held"] == held > 0
    rec.start()
    assert rec.info()["held"] == 0


@pytest.mark.parametrize("kwargs, exc", [
    ({"max_entries": 0}, ValueError), ({"max_entries": "10"}, TypeError),
    ({"stacks": -1}, ValueError), ({"stacks": 1000}, ValueError), ({"stacks": 2.5}, TypeError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        history.record(mempool.Pool(), **kwargs)
    with pytest.raises(TypeError):
        history.record("not a pool")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_empty_history():
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool) as rec:
        keep = np.ones(1000)
        assert rec.info()["held"] > 0
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            ok = rec.info()["held"] == 0 and rec.recording
            x = np.zeros(10)
            ok = ok and rec.info()["held"] == 1
            ok = ok and len(rec.top_sites()) == 2          # the inherited block's site too
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        got = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
    assert got == b"1"
    del keep


def test_tracemalloc_still_sees_numpy_data_once():
    pool = mempool.Pool()
    tracemalloc.start()
    try:
        for recording in (False, True):
            with mempool.use(pool), history.record(pool) if recording else _nothing():
                before = tracemalloc.get_traced_memory()[0]
                a = np.ones(123_457, dtype=np.uint8)
                snap = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.DomainFilter(True, 389047)])
                traced = sum(t.size for t in snap.traces)
                assert traced >= a.nbytes
                assert any(t.size == a.nbytes for t in snap.traces)
                assert tracemalloc.get_traced_memory()[0] - before < 2 * a.nbytes
                del a
    finally:
        tracemalloc.stop()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def test_recording_off_leaves_the_fast_path_and_shares_it_with_trace():
    from mempool import trace
    pool = mempool.Pool()
    with history.record(pool) as rec:
        assert mempool._core._history_recording(pool)
        mempool._core._trace_start(pool)
        mempool._core._trace_stop(pool)      # the history keeps recording
        with mempool.use(pool):
            a = np.ones(100)
        assert _addr(a) in rec.events()["address"]
    assert not mempool._core._history_recording(pool)
    with mempool.use(pool):
        b = np.ones(100)
    assert _addr(b) not in rec.events()["address"]
    del trace


def test_repr_and_info():
    pool = mempool.Pool()
    rec = history.record(pool)
    assert "stopped" in repr(rec)
    with rec:
        assert "recording" in repr(rec)
    assert set(POOL_EVENT_KINDS) == {"arena_map", "arena_unmap", "direct_map", "direct_unmap",
                                     "purge", "mesh", "limit", "exhausted", "error"}
