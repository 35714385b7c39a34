"""python -m mempool replay / stress: smoke runs, bad input, missing peers."""
import json
import os
import subprocess
import sys

import pytest

from mempool.tools import replay
from mempool.tools.demo import runner

# The children reset LD_PRELOAD (to preload the peers): an extension built
# with ASan cannot load in them, so the end-to-end runs are skipped there.
children = pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                              reason="children cannot load an ASan-built extension")


def _run(*args, timeout=300, columns=None):
    env = None if columns is None else dict(os.environ, COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "mempool", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@children
def test_replay_of_a_shipped_trace(tmp_path):
    out = tmp_path / "r.json"
    proc = _run("replay", "temporaries", "--allocators", "malloc,mempool",
                "--settle", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "replay of temporaries.trace" in proc.stdout
    data = json.loads(out.read_text())["traces"]["temporaries"]
    rows = {r["allocator"]: r for r in data["rows"]}
    assert rows["malloc"]["status"] == rows["mempool"]["status"] == "ok"
    assert rows["mempool"]["peak_live_bytes"] == data["summary"]["peak_live_bytes"]
    assert rows["mempool"]["pool_check"] == 0
    assert rows["malloc"]["time_ratio"] == 1.0


@children
def test_stress_quick_runs_every_available_allocator(tmp_path):
    out = tmp_path / "s.json"
    proc = _run("stress", "--quick", "--settle", "0.2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["patterns"]["drift"]["rows"]
    assert [r["allocator"] for r in rows] == list(replay.DEFAULT_ALLOCATORS)
    for r in rows:
        assert r["status"] in ("ok", "skipped"), r
    assert {r["allocator"] for r in rows if r["status"] == "ok"} >= {"malloc", "mempool"}


def test_bad_input_gives_a_message_not_a_traceback(tmp_path):
    # A narrow terminal: error messages go to stderr as plain lines, never
    # wrapped at the terminal width (they are read by scripts and tests too).
    narrow = {"columns": 20}
    procs = []
    proc = _run("replay", str(tmp_path / "missing.trace"), **narrow)
    assert proc.returncode == 2 and "no trace file" in proc.stderr
    procs.append(proc)
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"\x1f\x8bnot really gzip")
    proc = _run("replay", str(junk), **narrow)
    assert proc.returncode == 2 and "corrupt gzip" in proc.stderr
    procs.append(proc)
    proc = _run("stress", "--allocators", "nosuch", **narrow)
    assert proc.returncode == 2 and "unknown allocator" in proc.stderr
    procs.append(proc)
    proc = _run("stress", "--rounds", "0", "--allocators", "malloc", **narrow)
    assert proc.returncode == 2 and "bad stress parameters" in proc.stderr
    procs.append(proc)
    for p in procs:
        assert "Traceback" not in p.stdout + p.stderr


def test_missing_peers_are_reported_as_skipped(monkeypatch):
    monkeypatch.setattr(runner, "find_shared_library", lambda *a: None)
    rows = replay.run_rows({"trace": "unused", "settle_s": 0}, ["jemalloc", "tcmalloc"])
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert "not installed" in rows[0]["reason"]


def test_without_the_corpus_replay_says_what_to_do(monkeypatch, tmp_path, capsys):
    # Installed from a wheel, mempool has no trace corpus (benches/traces/ of
    # a source checkout): naming a corpus trace, or naming none, says so and
    # what to do; a trace file given by path still replays.
    from mempool.tools import corpus
    from mempool.tools.realbench import analyze
    monkeypatch.setattr(corpus, "TRACE_DIR", tmp_path / "no-checkout" / "traces")
    monkeypatch.setattr(corpus, "REAL_DIR", tmp_path / "no-checkout" / "traces" / "real")
    for argv in (["temporaries"], []):
        assert replay.main(argv) == 2
        err = capsys.readouterr().err
        assert "source checkout" in err and "pip install -e" in err, err
        assert len(err.strip().splitlines()) == 1
    assert analyze.main([]) == 2
    assert "pip install -e" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="named traces need the corpus"):
        replay.resolve_trace("mlp")
    path = tmp_path / "t.trace"
    path.write_bytes(b"")
    assert replay.resolve_trace(str(path)) == path


@children
def test_a_replay_whose_allocation_fails_is_reported_and_exits_non_zero(tmp_path):
    # The first block asks for 1 PiB: the pool refuses it (capacity, size),
    # and so does malloc.  The run must not say "ok" nor exit 0.
    import numpy as np

    from mempool import trace as tr
    ev = np.zeros(3, dtype=tr.EVENT_DTYPE)
    ev["op"] = [tr.ALLOC, tr.ALLOC, tr.FREE]
    ev["id"] = [0, 1, 1]
    ev["size"] = [1 << 50, 4096, 0]
    path = tr.Trace(ev, 2, {}).save(tmp_path / "huge.trace")
    out = tmp_path / "r.json"
    proc = _run("replay", str(path), "--allocators", "malloc,mempool", "--settle", "0",
                "--json", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ": ok" not in proc.stdout
    err = proc.stderr.strip().splitlines()
    assert len(err) == 2 and all("1 allocation failed" in line for line in err), err
    assert "mempool" in proc.stderr and "malloc" in proc.stderr
    rows = json.loads(out.read_text())["traces"][str(path)]["rows"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["failed"] == 1 for r in rows)
