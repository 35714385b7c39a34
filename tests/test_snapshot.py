"""Pool.snapshot(): the walk, its JSON (docs/snapshot-schema.md) and the
memory_viz export.

The exactness test is the issue's: a snapshot's live blocks are the arrays
alive at that moment, address by address, their requested sizes sum to
stats().live_bytes, and each array's recorded site is the line that made it.
"""
import gzip
import inspect
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import mempool
from mempool import history, snapshot as snapmod
from mempool.snapshot import BLOCK_STATES, Snapshot, SnapshotError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "snapshot-schema.json"


def _line():
    """The line number of the caller's current line."""
    return inspect.currentframe().f_back.f_lineno


def _addr(a):
    return a.__array_interface__["data"][0]


def _state(name):
    return BLOCK_STATES.index(name)


@pytest.fixture
def pool():
    p = mempool.Pool()
    yield p


def _make_arrays():
    """Arrays of every layer, each with the line that made it."""
    made = []
    a = np.ones(7); made.append((a, _line()))                             # noqa: E702
    b = np.zeros(3000, dtype=np.int32); made.append((b, _line()))       # noqa: E702
    c = np.arange(40_000, dtype=np.float64); made.append((c, _line()))  # noqa: E702
    d = np.ones((1100, 1000)); made.append((d, _line()))                # noqa: E702
    e = np.empty(300 << 20, dtype=np.uint8); made.append((e, _line()))  # noqa: E702
    gone = [np.empty(100) for _ in range(20)]
    kept = gone[::3]; made += [(k, None) for k in kept]                 # noqa: E702
    del gone
    return made


def test_live_blocks_are_exactly_the_arrays_alive_with_their_lines():
    pool = mempool.Pool(huge_min=4 << 20)   # the 2 MiB-granule heap is opt-in: here too
    with mempool.use(pool), history.record(pool, stacks=8):
        made = _make_arrays()
        snap = pool.snapshot()
        st = pool.stats()
    live = snap.live_blocks()
    assert set(live["address"].tolist()) == {_addr(a) for a, _ in made}
    assert int(live["requested"].sum()) == st.live_bytes == snap.stats["live_bytes"]
    assert st.live_bytes == sum(a.nbytes for a, _ in made)
    for a, line in made:
        if line is None:
            continue
        site = snap.data["blocks"]["site"][np.flatnonzero(snap.blocks["address"] == _addr(a))[0]]
        file, lineno, func = snap.user_frame(int(site))
        assert (os.path.basename(file), lineno, func) == (
            "test_snapshot.py", line, "_make_arrays"), (a.nbytes, snap.stack(int(site)))
    # every layer is there: slabs, the page heap, the huge heap, a direct map
    segs = snap.segments
    kinds = {snap.data["segment_kinds"][k] for k in segs["kind"].tolist()}
    heaps = {snap.data["heaps"][h] for h in segs["heap"].tolist()}
    assert kinds == {"arena", "slab", "direct"}
    assert {"page", "huge", "direct"} <= heaps


def test_blocks_tile_every_segment_and_totals_add_up(pool):
    with mempool.use(pool):
        arrays = _make_arrays()
        snap = pool.snapshot()
    s, b = snap.segments, snap.blocks
    for i in range(len(s["address"])):
        lo, n = int(s["first_block"][i]), int(s["block_count"][i])
        assert (b["segment"][lo:lo + n] == i).all()
        children = np.flatnonzero(s["parent"] == i)
        covered = [(int(b["address"][j]), int(b["size"][j])) for j in range(lo, lo + n)]
        covered += [(int(s["address"][c]), int(s["size"][c])) for c in children]
        covered.sort()
        at = int(s["address"][i])
        for start, size in covered:
            assert start == at, f"segment {i}: a gap or overlap at 0x{at:x}"
            at += size
        assert at == int(s["address"][i] + s["size"][i])
    assert (np.diff(s["address"]) >= 0).all()
    totals = snap.data["totals"]["bytes"]
    assert sum(totals.values()) == int(s["size"][s["parent"] < 0].sum())
    assert sum(totals.values()) == snap.stats["reserved_bytes"]
    del arrays


def test_free_cached_released_and_buffer_states(pool):
    with mempool.use(pool):
        keep = [np.empty(64) for _ in range(50)]
        tmp = [np.empty(64) for _ in range(50)]
        del tmp                                  # this thread's cache holds some
        big = np.ones(1 << 20)
        del big                                  # a free span, resident
        buf = pool.buffer(1 << 16)
        view = buf.array(16)                     # pinned while the view lives
        other = pool.buffer(1 << 16)
        snap = pool.snapshot()
    states = set(snap.blocks["state"].tolist())
    for name in ("live", "cached", "free", "released", "pinned", "buffer"):
        assert _state(name) in states, name
    pool.trim()
    after = pool.snapshot()
    assert after.data["totals"]["bytes"]["free"] < snap.data["totals"]["bytes"]["free"]
    del keep, view, buf, other


def test_meshed_slabs_show(tmp_path):
    pool = mempool.Pool(mesh=True)
    with mempool.use(pool):
        arrays = [np.empty(32) for _ in range(20_000)]
        rng = np.random.default_rng(1)
        kept = [arrays[i] for i in rng.choice(len(arrays), 800, replace=False)]
        del arrays
        pool.trim()
        snap = pool.snapshot()
    if pool.stats().mesh_pages == 0:
        pytest.skip("nothing meshed here (memfd or mapping budget)")
    s = snap.segments
    assert (s["mesh_owner"] >= 0).any()
    assert _state("meshed") in set(snap.blocks["state"].tolist())
    del kept


def test_json_matches_the_schema_and_loads_back(pool, tmp_path):
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("jsonschema's rpds extension leaks under LeakSanitizer")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    with mempool.use(pool), history.record(pool):
        arrays = _make_arrays()
        pool.trim()
        snap = pool.snapshot()
    path = snap.dump(tmp_path / "s.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, schema)
    assert data["format"] == "mempool-snapshot" and data["version"] == 1
    back = snapmod.load(path)
    assert back.live_bytes() == snap.live_bytes()
    gz = snap.dump(tmp_path / "s.json.gz")
    with gzip.open(gz, "rt") as f:
        assert json.load(f) == data
    assert snapmod.load(gz).data["blocks"]["count"] == data["blocks"]["count"]
    # the checked-in example follows the schema too
    jsonschema.validate(json.loads((ROOT / "docs/examples/snapshot-example.json").read_text()),
                        schema)
    del arrays


def test_snapshot_without_history_has_null_history(pool):
    with mempool.use(pool):
        a = np.ones(1000)
        snap = pool.snapshot()
    assert snap.history is None
    assert (snap.blocks["site"] == -1).all()
    assert snap.data["stacks"] == [] and snap.data["frames"]["count"] == 0
    del a


def test_a_snapshot_does_not_change_the_pool(pool):
    with mempool.use(pool), history.record(pool) as rec:
        a = np.ones(5000)
        before = pool.stats()
        n = rec.info()["held"]
        pool.snapshot()
        after = pool.stats()
        assert rec.info()["held"] == n
    assert (after.alloc_count, after.live_bytes) == (before.alloc_count, before.live_bytes)
    del a


@pytest.mark.parametrize("content, message", [
    (b"", "not a JSON snapshot"),
    (b"{not json", "not a JSON snapshot"),
    (b'{"format": "something-else"}', "not a mempool snapshot"),
    (b'[1, 2]', "not a mempool snapshot"),
    (b'{"format": "mempool-snapshot", "version": 99}', "version 99"),
    (b"\x1f\x8b\x08garbage", "not a JSON snapshot"),
])
def test_load_rejects_what_is_not_a_snapshot(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match=message):
        snapmod.load(path)
    with pytest.raises(SnapshotError, match="no such file"):
        snapmod.load(tmp_path / "missing.json")


def test_memory_viz_export(pool, tmp_path):
    with mempool.use(pool), history.record(pool):
        arrays = _make_arrays()
        snap = pool.snapshot()
    viz = snap.to_memory_viz()
    assert set(viz) >= {"segments", "device_traces"}
    allowed = {"active_allocated", "inactive"}
    active_requested = 0
    for seg in viz["segments"]:
        assert seg["total_size"] == sum(b["size"] for b in seg["blocks"])
        at = seg["address"]
        for b in seg["blocks"]:
            assert b["address"] == at and b["state"] in allowed
            at += b["size"]
            if b["state"] == "active_allocated":
                active_requested += b["requested_size"]
                assert all(set(f) == {"filename", "line", "name"} for f in b["frames"])
    assert active_requested == snap.stats["live_bytes"]
    actions = {e["action"] for e in viz["device_traces"][0]}
    assert {"alloc", "free_requested", "free_completed", "segment_alloc"} <= actions
    times = [e["time_us"] for e in viz["device_traces"][0]]
    assert times == sorted(times)
    path = snap.dump_memory_viz(tmp_path / "s.pickle")
    assert pickle.loads(path.read_bytes())["segments"][0]["total_size"] > 0
    del arrays


def test_snapshot_of_a_closed_pool_raises():
    pool = mempool.Pool()
    pool.close()
    with pytest.raises(mempool.PoolClosed):
        pool.snapshot()


def test_snapshot_is_a_snapshot_class(pool):
    snap = pool.snapshot()
    assert isinstance(snap, Snapshot)
    assert "segments" in repr(snap)
    assert snap.data["process"]["pid"] == os.getpid()
