"""The real-library suite (``python -m mempool bench --real``) and its
tuning corpus (``benches/traces/real/``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mempool
from mempool import trace as tr
from mempool.tools import harness
from mempool.tools import realbench
from mempool.tools.realbench import report, runner, workloads

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted(realbench.CORPUS_DIR.glob("*.trace"))


def test_every_workload_has_a_corpus_trace():
    assert sorted(p.stem for p in CORPUS) == sorted(workloads.WORKLOADS)
    total = sum(p.stat().st_size for p in CORPUS)
    assert total < 8 << 20, f"corpus is {total / 2**20:.1f} MiB; keep it a few MB"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_trace_replays_under_the_pool_without_errors(path):
    t = tr.load(path)
    s = t.summary()
    assert t.meta["workload"] == path.stem and t.meta["lost"] == 0
    pool = mempool.Pool()
    res = harness.replay_here(t, pool)
    assert res["bad_events"] == 0 and res["failed"] == 0
    assert res["ops"] == s["events"]
    assert res["peak_live_bytes"] == s["peak_live_bytes"]
    assert pool.stats().error_total == 0
    assert pool.check() == 0
    assert pool.stats().live_bytes == 0
    pool.close()


GROWN = ["pd_strings", "pd_parquet", "sk_pipeline", "xr_reduce", "svc_requests"]


@pytest.mark.parametrize("name", GROWN)
def test_workload_gives_the_same_results_under_the_pool(name):
    """The workloads added for strings, Parquet, threaded pipelines, xarray and a
    service loop run at their quick size and give the same digest with the pool
    as numpy's handler (this thread's arrays) as without."""
    wl = workloads.WORKLOADS[name]
    for lib in wl.libs:
        pytest.importorskip(lib, reason=f"{name} needs {lib} (pip install 'mempool[real]')")
    expected = workloads.digest(wl.fn(wl.quick, 0))
    pool = mempool.Pool()
    with mempool.use(pool):
        got = workloads.digest(wl.fn(wl.quick, 0))
    assert got == expected
    s = pool.stats()
    assert s.alloc_count > 100 and s.error_total == 0 and pool.check() == 0
    pool.close()


def test_digest_ignores_last_bits_but_not_real_changes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    base = workloads.digest([x, 3, x.astype(np.float32)])
    assert workloads.digest([x * (1 + 1e-15), 3, x.astype(np.float32)]) == base
    y = x.copy()
    y[17] += 1e-3
    assert workloads.digest([y, 3, x.astype(np.float32)]) != base
    assert workloads.digest([x, 4, x.astype(np.float32)]) != base


def test_check_digests_names_the_runs_that_differ():
    recs = [{"status": "ok", "workload_name": "w", "allocator": a, "round": 0, "digest": d}
            for a, d in (("default", "aa"), ("mempool", "aa"), ("jemalloc", "bb"))]
    (msg,) = report.check_digests(recs)
    assert "bb from jemalloc/r0" in msg and "default/r0, mempool/r0" in msg
    assert report.check_digests(recs[:2]) == []


def test_targets_from_a_summary():
    mk = lambda wall, peak, after: {"wall_s": wall, "peak_rss": peak, "rss_after": after}  # noqa: E731
    recs = []
    for r in range(3):
        for name, (wall, peak, after) in {"default": (1.0, 100, 50), "jemalloc": (0.9, 110, 60),
                                          "mempool": (0.91, 101, 49)}.items():
            recs.append(dict(mk(wall, peak, after), status="ok", workload_name="w",
                             allocator=name, round=r, cpu_s=wall, faults=10,
                             peak_rss_over_baseline=peak - 40, baseline_rss=40, digest="x"))
    summary = report.summarize(recs, ["w"], ["default", "mempool", "jemalloc"])
    (t,) = report.evaluate_targets(summary)
    assert t["time_x_fastest_other"] == pytest.approx(0.91 / 0.9)
    assert t["time_met"] and t["after_met"]
    assert not t["peak_met"]          # 61 MiB over base against default's 60
    assert t["faults_met"] and t["faults_x_fewest_other"] == pytest.approx(1.0)
    assert summary["workloads"]["w"]["jemalloc"]["wall_x_default"] == pytest.approx(0.9)
    assert summary["workloads"]["w"]["mempool"]["fastest_other_wall"] == "jemalloc"


def test_bad_names_and_missing_libraries_are_reported(capsys, monkeypatch):
    assert realbench.main(["--real", "--only", "nope"]) == 2
    assert "unknown workload(s) nope" in capsys.readouterr().out
    assert realbench.main(["--real", "--allocators", "default,glibc"]) == 2
    assert "unknown allocator(s) glibc" in capsys.readouterr().out
    monkeypatch.setattr(runner, "missing_libraries", lambda names: ["sklearn"])
    assert realbench.main(["--real", "--quick"]) == 2
    assert "pip install 'mempool[real]'" in capsys.readouterr().out


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="the children reset LD_PRELOAD: an ASan-built extension "
                           "cannot load in them")
def test_quick_suite_smoke(tmp_path):
    """Two small workloads, numpy's default and the pool, one round: the
    command runs end to end, the results agree, JSON and plot are written."""
    pytest.importorskip("pandas", reason="the real-library suite needs pandas "
                                         "(pip install 'mempool[real]')")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "mempool", "bench", "--real", "--quick", "--only",
         "np_small,pd_groupby", "--allocators", "default,mempool", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "real.json").read_text())
    assert data["digest_mismatches"] == [] and data["summary"]["errors"] == []
    for wl in ("np_small", "pd_groupby"):
        rows = data["summary"]["workloads"][wl]
        assert set(rows) == {"default", "mempool"}
        assert rows["mempool"]["pool_at_end"]["peak_live_bytes"] > 0
        assert all(r["faults"] > 0 and r["peak_rss"] >= r["rss_after"] * 0.5
                   for r in rows.values())
    assert {t["workload"] for t in data["targets"]} == {"np_small", "pd_groupby"}
    assert (tmp_path / "real.png").stat().st_size > 10_000
    assert "targets for mempool" in proc.stdout


def test_peak_breakdown_adds_up():
    from mempool.tools.realbench import analyze
    r = analyze.breakdown(realbench.CORPUS_DIR / "sk_linear.trace")
    assert r["live"] == r["peak_live_whole"]
    assert r["live"] + r["rounding"] == r["allocated"]
    assert r["allocated"] + r["slab_free"] + r["free_resident"] + r["other"] == r["resident"]
    assert 0 <= r["huge_rounding"] <= r["rounding"]
    assert r["peak_resident_whole"] >= r["resident"]
    assert r["errors"] == 0 and r["check"] == 0
    assert "| sk_linear |" in analyze.render([r])


def test_bestfit_reference_reuses_holes_and_coalesces():
    from mempool.tools.realbench import analyze
    ev = np.zeros(7, dtype=tr.EVENT_DTYPE)
    KIB = 1024
    ops = [(tr.ALLOC, 0, 64 * KIB), (tr.ALLOC, 1, 64 * KIB), (tr.ALLOC, 2, 64 * KIB),
           (tr.FREE, 0, 0), (tr.FREE, 1, 0),          # a 128 KiB hole, coalesced
           (tr.ALLOC, 3, 100 * KIB),                  # fits the hole: no growth
           (tr.ALLOC, 4, 8 * KIB)]                    # small: not modelled
    ev["op"], ev["id"], ev["size"] = zip(*ops)
    assert analyze.bestfit_highwater(ev, small_max=32 * KIB, huge_min=4 << 20) == 192 * KIB


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="the recording child resets LD_PRELOAD")
def test_record_corpus_writes_a_replayable_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (path,) = realbench.record_corpus(["np_linalg_fft"], tmp_path)
    t = tr.load(path)
    assert t.meta["workload"] == "np_linalg_fft" and t.meta["n"] == 1000
    assert t.summary()["peak_live_bytes"] > 10 << 20
    shipped = tr.load(realbench.CORPUS_DIR / "np_linalg_fft.trace")
    assert t.summary()["events"] == shipped.summary()["events"]   # same code, same events
