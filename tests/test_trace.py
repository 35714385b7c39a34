"""mempool.trace: recording through the handler, the file format, bad files."""
import gzip
import threading

import numpy as np
import pytest

import mempool
from mempool import trace as tr


def _ops(t):
    return [tr.OP_NAMES[int(o)] for o in t.events["op"]]


def test_record_matches_what_numpy_did(pool):
    with tr.record(pool=pool) as rec:
        a = np.ones(100_000)             # alloc 800,000
        b = np.zeros((300, 300))         # calloc 720,000
        del a
        c = np.empty(10, dtype=np.int8)  # alloc 10
        del b, c
    t = rec.trace
    big = t.events[t.events["size"] >= 10]
    assert [(tr.OP_NAMES[int(e["op"])], int(e["size"])) for e in big] == [
        ("alloc", 800_000), ("calloc", 720_000), ("alloc", 10)]
    s = t.summary()
    assert s["peak_live_bytes"] >= 1_520_000
    assert s["final_live_bytes"] < 1_000
    assert np.all(np.diff(t.events["t_ns"].astype(np.int64)) >= 0)
    assert t.meta["skipped"] == 0 and t.meta["lost"] == 0


def test_frees_of_blocks_made_before_recording_are_skipped(pool):
    with mempool.use(pool):
        early = [np.ones(1000) for _ in range(3)]
    with tr.record(pool=pool) as rec:
        del early
        late = np.ones(2000)
    assert rec.trace.meta["skipped"] == 3
    ev = rec.trace.events
    # Only blocks allocated inside were freed (numpy's own small helpers);
    # the 3 early arrays left no event at all.
    freed = set(ev["id"][ev["op"] == tr.FREE].tolist())
    assert freed <= set(ev["id"][ev["op"] == tr.ALLOC].tolist())
    assert 8000 not in ev["size"].tolist()
    assert rec.trace.summary()["final_live_bytes"] >= 16_000
    del late


def test_realloc_keeps_the_block_id(pool):
    # numpy reallocs an array's data when resize() grows it in place
    with tr.record(pool=pool) as rec:
        a = np.zeros(1000)
        a.resize(50_000, refcheck=False)
        del a
    ev = rec.trace.events
    grown = ev[ev["op"] == tr.REALLOC]
    assert len(grown) == 1 and int(grown[0]["size"]) == 400_000
    bid = grown[0]["id"]
    assert [tr.OP_NAMES[int(o)] for o in ev[ev["id"] == bid]["op"]] == [
        "calloc", "realloc", "free"]


def test_threads_are_recorded_consistently(pool):
    def work():
        with mempool.use(pool):
            for i in range(200):
                x = np.ones(100 + i)
                del x

    with tr.record(pool=pool) as rec:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    s = rec.trace.summary()  # Trace.from_records validated every block's history
    assert s["alloc"] >= 800 and s["free"] >= 800


def test_file_round_trip(pool, tmp_path):
    path = tmp_path / "run.trace"
    with tr.record(path, pool=pool) as rec:
        a = [np.ones(n) for n in (10, 1000, 100_000)]
        del a[1]
    loaded = tr.load(path)
    assert np.array_equal(loaded.events, rec.trace.events)
    assert loaded.n_ids == rec.trace.n_ids
    assert loaded.meta == rec.trace.meta
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    raw = tmp_path / "raw.trace"
    rec.trace.save(raw, compress=False)
    assert tr.load(raw).summary() == loaded.summary()


def test_bad_files_give_clear_errors(tmp_path, pool):
    with pytest.raises(tr.TraceError, match="cannot read"):
        tr.load(tmp_path / "missing.trace")
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"hello world, not a trace")
    with pytest.raises(tr.TraceError, match="bad magic"):
        tr.load(junk)
    with tr.record(pool=pool) as rec:
        a = np.ones(1000)
        del a
    good = tmp_path / "good.trace"
    rec.trace.save(good, compress=False)
    blob = good.read_bytes()
    (tmp_path / "short.trace").write_bytes(blob[:-5])
    with pytest.raises(tr.TraceError, match="truncated"):
        tr.load(tmp_path / "short.trace")
    (tmp_path / "badgz.trace").write_bytes(gzip.compress(blob)[:-8])
    with pytest.raises(tr.TraceError, match="gzip"):
        tr.load(tmp_path / "badgz.trace")
    # events out of order: each block freed before it is allocated
    tr.Trace(rec.trace.events[::-1].copy(), rec.trace.n_ids).save(tmp_path / "rev.trace")
    with pytest.raises(tr.TraceError, match="history"):
        tr.load(tmp_path / "rev.trace")


def test_recording_twice_or_stopping_idle_is_refused(pool):
    from mempool import _core
    with tr.record(pool=pool, use=False):
        with pytest.raises(RuntimeError, match="already"):
            _core._trace_start(pool)
    with pytest.raises(RuntimeError, match="not being recorded"):
        _core._trace_stop(pool)


def test_live_series_matches_a_hand_count():
    ev = np.zeros(5, dtype=tr.EVENT_DTYPE)
    ev["op"] = [tr.ALLOC, tr.ALLOC, tr.REALLOC, tr.FREE, tr.FREE]
    ev["id"] = [0, 1, 0, 0, 1]
    ev["size"] = [100, 50, 300, 0, 0]
    assert tr.live_series(ev).tolist() == [100, 150, 350, 50, 0]


def test_many_live_blocks_with_random_lifetimes(pool):
    # Thousands of blocks alive at once (the recorder's pointer map grows
    # several times) freed in random order (its deletions shift entries):
    # the recorded live series must end where the pool's accounting ends.
    rng = np.random.default_rng(5)
    with mempool.use(pool):
        keep_outside = np.ones(10)  # allocated before: its free is skipped
    live_before = pool.stats().live_bytes
    with tr.record(pool=pool) as rec:
        held = {}
        for i in range(6000):
            held[i] = np.empty(int(rng.integers(1, 4000)), dtype=np.uint8)
            if rng.random() < 0.4 and held:
                keys = list(held)
                del held[keys[int(rng.integers(len(keys)))]]
            if i == 3000:
                del keep_outside
        sizes_left = sum(a.nbytes for a in held.values())
    s = rec.trace.summary()
    assert s["alloc"] >= 6000 and rec.trace.meta["skipped"] >= 1
    assert s["final_live_bytes"] >= sizes_left
    assert s["final_live_bytes"] == pool.stats().live_bytes - live_before + 80
    del held
