"""Tests of the demo and the bench command (no timing assertions).

The workloads must be deterministic (same seed, same values), the demo must
run end to end in a subprocess and write its JSON and plots, and every
allocator must produce bit-identical step values.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mempool.tools import bench
from mempool.tools.demo import build_parser, parse_pair, report, runner, workloads

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(workloads.WORKLOADS))
def test_workload_is_deterministic(name):
    first = workloads.run(name, 4, seed=3)
    second = workloads.run(name, 4, seed=3)
    assert workloads.digest(first) == workloads.digest(second)
    assert len(first) == 4


def test_mlp_depends_on_seed_and_learns():
    a = workloads.run("mlp", 12, seed=0)
    b = workloads.run("mlp", 12, seed=1)
    assert workloads.digest(a) != workloads.digest(b)
    assert all(x == x and x > 0 for x in a)  # finite, positive cross-entropy
    assert sum(a[-3:]) < sum(a[:3])  # SGD lowers the loss


def test_mlp_batch_sizes_drift_within_range():
    mlp = workloads.MLP(50, seed=0, batch_range=(32, 512))
    assert all(32 <= b <= 512 for b in mlp.batches)
    assert len(set(mlp.batches)) > 25  # it really drifts every step
    mlp.close()


def test_temporaries_sizes_within_range():
    t = workloads.Temporaries(40, seed=0)
    sizes = [8 * n for n in t.lengths]
    assert min(sizes) >= 1 << 20 and max(sizes) <= 64 << 20
    assert 20 < t.mean_result_mib() < 45
    t.close()


def test_workload_under_pool_gives_same_values():
    import mempool
    expected = workloads.run("mlp", 3, seed=0)
    pool = mempool.Pool()
    with mempool.use(pool):
        got = workloads.run("mlp", 3, seed=0)
    assert got == expected


@pytest.mark.parametrize("name", [n for n, spec in workloads.WORKLOADS.items()
                                  if spec[0].has_floor])
def test_floor_variant_gives_bit_identical_values(name):
    # The floor row is only a fair reference if it computes the same thing.
    kwargs = {"batch_range": (1, 300)} if name == "mlp" else {}
    plain = workloads.run(name, 12, seed=4, **kwargs)
    floor = workloads.run(name, 12, seed=4, floor=True, **kwargs)
    assert floor == plain


def test_floor_variant_allocates_no_large_array_per_step():
    # Under a pool, the floor's steps must leave the large heap alone: peak
    # live is reached at construction, not in the loop.
    import mempool
    pool = mempool.Pool()
    with mempool.use(pool):
        wl = workloads.make("temporaries", 6, seed=0, floor=True)
        before = pool.stats().large_alloc_count
        for i in range(6):
            wl.step(i)
        assert pool.stats().large_alloc_count == before
        wl.close()


def test_floor_row_only_for_workloads_with_a_floor():
    floor = runner.discover(["floor"])[0]
    assert floor.floor and floor.available
    assert floor.runs("mlp") and floor.runs("temporaries") and not floor.runs("small")
    with pytest.raises(ValueError, match="no floor"):
        workloads.make("small", 2, floor=True)


def test_workloads_without_blas_get_one_blas_thread():
    one = {k: "1" for k in runner.BLAS_VARS}
    assert runner.workload_env("small") == one
    assert runner.workload_env("temporaries") == one
    assert runner.workload_env("mlp") == {}  # the library's own choice
    # A count the user chose wins everywhere.
    chosen = {k: "2" for k in runner.BLAS_VARS}
    assert runner.workload_env("small", chosen) == chosen


def test_unknown_workload_rejected():
    with pytest.raises(ValueError):
        workloads.make("nope", 2)


def test_parse_pair_and_parser():
    assert parse_pair("32-512") == (32, 512)
    assert parse_pair("8,16") == (8, 16)
    args = build_parser().parse_args(["--allocators", "default,mempool", "--quick"])
    assert args.allocators == ["default", "mempool"] and args.quick
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--allocators", "nosuch"])


def test_missing_peer_is_skipped_with_install_hint(monkeypatch):
    monkeypatch.setitem(runner.PEERS, "jemalloc",
                        (("no_such_allocator_xyz",), ("libno_such_allocator_xyz.so*",)))
    (alloc,) = runner.discover(["jemalloc"])
    assert not alloc.available
    assert "apt-get install" in alloc.reason


def test_child_env_replaces_allocator_settings(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/some/other.so")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=3")
    default, tuned = runner.discover(["default", "glibc-tuned"])
    env = runner.child_env(default)
    assert "LD_PRELOAD" not in env and "GLIBC_TUNABLES" not in env
    assert runner.child_env(tuned)["GLIBC_TUNABLES"] == runner.TUNED_GLIBC
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(runner.PACKAGE_PARENT)


def _fake_record(alloc, rnd, ns, faults, digest="d"):
    steps = 8
    return {"status": "ok", "allocator": alloc, "workload_name": "mlp", "round": rnd,
            "step_ns": [ns] * steps, "step_faults": [faults] * steps,
            "ops_per_step": 1, "loop_stime_s": 0.1, "baseline_rss": 30_000_000,
            "peak_rss": 90_000_000, "rss_after_free": 31_000_000,
            "rss_after_free_now": 40_000_000, "digest": digest,
            "live_estimate_bytes": 50_000_000}


def test_summarize_uses_same_round_ratios_and_checks_digests():
    recs = [_fake_record("default", 0, 20e6, 6000), _fake_record("jemalloc", 0, 10e6, 20),
            _fake_record("default", 1, 40e6, 6000), _fake_record("jemalloc", 1, 20e6, 20)]
    out = report.summarize(recs, ["mlp"], ["default", "jemalloc"])
    row = out["summary"]["mlp"]["jemalloc"]
    assert row["ratio_to_default"] == pytest.approx(0.5)
    assert row["faults_per_step"] == 20
    assert row["rss_over_live"] == pytest.approx(60 / 50)
    assert out["consistency"]["mlp"]["identical"]
    rows = out["summary"]["mlp"]
    assert report.same_round_ratio(rows["jemalloc"], rows["default"]) == pytest.approx(0.5)
    recs.append(_fake_record("jemalloc", 2, 1e6, 0, digest="other"))
    assert not report.summarize(recs, ["mlp"], ["default", "jemalloc"])[
        "consistency"]["mlp"]["identical"]


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "mempool", "demo", "--quick", "--steps", "6",
           "--allocators", "default,mempool,floor", "--settle", "0.3", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    for key in ("meta", "definitions", "allocators", "skipped", "summary", "consistency",
                "targets", "failed", "records", "plots"):
        assert key in data
    assert data["failed"] == []
    assert data["skipped"] == []
    for wl in workloads.WORKLOADS:
        assert (out / f"{wl}.png").stat().st_size > 0
        rows = data["summary"][wl]
        has_floor = workloads.WORKLOADS[wl][0].has_floor
        assert set(rows) == {"default", "mempool"} | ({"floor"} if has_floor else set())
        for row in rows.values():
            for key in ("step_ns_per_op", "ratio_to_default", "faults_per_step",
                        "peak_rss", "baseline_rss", "rss_after_free", "peak_live_bytes"):
                assert row[key] is not None
        assert rows["mempool"]["peak_live_source"] == "pool"
        assert "pool" in rows["mempool"]
        assert data["consistency"][wl]["identical"]
    mlp = {r["allocator"]: r for r in data["records"] if r["workload_name"] == "mlp"}
    assert mlp["default"]["values"] == mlp["mempool"]["values"]
    assert mlp["default"]["digest"] == mlp["mempool"]["digest"] == mlp["floor"]["digest"]
    assert any(t["target"].startswith("time vs floor") for t in data["targets"])
    assert len(mlp["mempool"]["pool_steps"]) == 6
    for rec in mlp.values():
        assert set(rec["end_of_loop_map"]) == {"file", "heap", "anon", "other"}
        if "step_peak_rss" in rec:      # where the kernel lets the child reset its peak
            assert len(rec["step_peak_rss"]) == 6
            assert rec["peak_rss"] >= max(rec["step_peak_rss"]) >= max(rec["step_rss"]) * 0.99


def test_bench_main_runs_selected_parts(tmp_path):
    code = bench.main(["--skip-pytest", "--skip-c", "--quick", "--rounds", "1",
                       "--allocators", "default", "--workloads", "small",
                       "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert "peers" in data and "small" in data["peers"]["summary"]


@pytest.mark.parametrize("parser", [build_parser(), bench.build_parser()],
                         ids=["demo", "bench"])
def test_help_names_only_options_that_exist(parser):
    # demo --help named --help-workloads, which was no option at all
    text = re.sub(r"-\n\s+", "-", parser.format_help())   # argparse wraps at hyphens
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert named and named <= set(parser._option_string_actions), \
        named - set(parser._option_string_actions)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mempool", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_demo_help_workloads_describes_every_workload():
    proc = _cli("demo", "--help-workloads")
    assert proc.returncode == 0, proc.stderr
    for name, (cls, steps, quick, _) in workloads.WORKLOADS.items():
        assert f"  {name}: {cls.description}" in proc.stdout
        assert f"{steps} steps ({quick} with --quick)" in proc.stdout


def test_bench_help_offers_the_real_suite():
    proc = _cli("bench", "--help")
    assert proc.returncode == 0 and "--real" in proc.stdout, proc.stdout
    proc = _cli("bench", "--real", "--help")
    assert proc.returncode == 0 and "bench --real" in proc.stdout, proc.stdout
    with pytest.raises(SystemExit) as exc:     # bench.main itself hands --real on
        bench.main(["--real", "--help"])
    assert exc.value.code == 0


def test_noisy_round_rule():
    # the report's case: one default round at 83 ms against 20 ms
    (flag,) = report.noisy_rounds({"0": 20e6, "1": 83e6, "2": 21e6})
    assert flag["round"] == 1 and flag["ratio"] == pytest.approx(83 / 21)
    assert report.noisy_rounds({"0": 20e6, "1": 29e6, "2": 21e6}) == []   # 1.38x: noise
    assert report.noisy_rounds({"0": 20e6}) == []
    # two rounds 1.6x apart: neither can be trusted over the other
    assert [f["round"] for f in report.noisy_rounds({"0": 20e6, "1": 32e6})] == [0, 1]
    # a round far faster than the others deviates too
    assert [f["round"] for f in report.noisy_rounds({0: 60e6, 1: 20e6, 2: 61e6})] == [1]


def test_noisy_round_flagged_in_table_and_json():
    from rich.console import Console
    recs = [_fake_record("default", r, ns, 6000) for r, ns in enumerate((20e6, 83e6, 20e6))]
    recs += [_fake_record("jemalloc", r, ns, 20) for r, ns in enumerate((10e6, 41e6, 11e6))]
    recs += [_fake_record("mimalloc", r, 10e6, 20) for r in range(3)]
    out = report.summarize(recs, ["mlp"], ["default", "jemalloc", "mimalloc"])
    rows = out["summary"]["mlp"]
    assert [f["round"] for f in rows["default"]["noisy_rounds"]] == [1]
    assert rows["default"]["noisy_rounds"][0]["reference_ns"] == 20e6
    assert [f["round"] for f in rows["jemalloc"]["noisy_rounds"]] == [1]
    assert rows["mimalloc"]["noisy_rounds"] == []
    json.dumps(out)                                   # JSON-ready
    console = Console(width=200, record=True)
    report.render(console, out, runner.discover(["default", "jemalloc", "mimalloc"]))
    text = " ".join(console.export_text().split())     # unwrapped
    assert "noisy rounds (median step > 1.5x or < 1/1.5 the median" in text
    assert "default round 2 (83.00 ms, 4.15x); jemalloc round 2 (41.00 ms, 3.73x)" in text
    assert "mimalloc round" not in text
    assert "20.00 ms * │" in text                     # the row's median cell is marked


def _plot_record(alloc, rnd, wl="mlp", step_ms=20.0, steps=12, peak_mb=100.0, after_mb=90.0):
    rec = _fake_record(alloc, rnd, step_ms * 1e6, 5)
    rec.update(workload_name=wl, step_ns=[step_ms * 1e6 * (1 + (i % 3) / 10) for i in range(steps)],
               step_faults=[5] * steps, step_rss=[after_mb * 1e6] * steps,
               step_peak_rss=[peak_mb * 1e6 + i * 1e5 for i in range(steps)],
               ops_per_step=20000 if wl == "small" else 1)
    if alloc == "mempool":
        rec["pool_steps"] = [{"live_bytes": 40e6, "resident_bytes": 50e6,
                              "fragmentation": 0.1}] * steps
        rec["pool_end_of_loop"] = {"resident_bytes": 50_000_000, "peak_live_bytes": 40e6}
        rec["rss_end_of_loop"] = 98_000_000
        rec["baseline_map"] = {"file": 20_000_000, "heap": 5_000_000, "anon": 5_000_000,
                               "other": 100_000}
        rec["end_of_loop_map"] = {"file": 23_500_000, "heap": 5_500_000,
                                  "anon": 69_000_000, "other": 100_000}
    return rec


def _plot_data(wl="mlp"):
    recs = []
    for rnd in range(3):
        recs.append(_plot_record("default", rnd, wl, step_ms=30.0, peak_mb=95.0))
        recs.append(_plot_record("mempool", rnd, wl, step_ms=20.0, peak_mb=110.0))
        recs.append(_plot_record("jemalloc", rnd, wl, step_ms=83.0 if rnd == 1 else 25.0))
    names = ["default", "mempool", "jemalloc"]
    return recs, names, report.summarize(recs, [wl], names)["summary"][wl]


def test_ratio_ticks_never_use_powers_of_ten():
    from mempool.tools.demo import plots
    assert [plots.ratio_label(x) for x in (0.5, 0.75, 1.0, 2.0, 10.0)] == \
        ["0.5x", "0.75x", "1x", "2x", "10x"]


@pytest.mark.parametrize("wl", ["mlp", "small"])
def test_plot_layout_units_legend_and_flags(wl):
    from mempool.tools.demo import plots
    recs, names, rows = _plot_data(wl)
    fig = plots.figure(wl, recs, names, rows)
    fig.canvas.draw()
    ax_rss, ax_t, side = fig.axes
    per = "op" if wl == "small" else "step"
    # the title and the axis name the same unit (small said "per step" over "ns per op")
    assert f"time per {per}" in ax_t.get_title() and f"time per {per}" in ax_t.get_xlabel()
    ticks = [t.get_text() for t in ax_t.get_xticklabels(which="both") if t.get_text()]
    assert ticks and all(t.endswith("x") and "10^" not in t and "$" not in t for t in ticks)
    # the legend and the notes sit beside the plots, over no data and not on each other
    render = fig.canvas.get_renderer()
    legend = side.get_legend().get_window_extent(render)
    (note,) = side.texts
    note_box = note.get_window_extent(render)
    for ax in (ax_rss, ax_t):
        assert not legend.overlaps(ax.get_window_extent(render))
        assert not note_box.overlaps(ax.get_window_extent(render))
    assert not legend.overlaps(note_box)
    assert ax_rss.get_legend() is None and ax_t.get_legend() is None
    # the top panel draws the per-step peaks; the noisy round is flagged
    assert ax_rss.lines[0].get_ydata()[0] == pytest.approx(95.0)
    assert "peak RSS within the step" in ax_rss.get_ylabel()
    labels = [t.get_text() for t in ax_t.get_yticklabels()]
    assert labels[0].startswith("mempool\n") and labels[1].startswith("jemalloc *\n")
    assert re.search(r"jemalloc round 2 \(\S+ [mn]?s, 3\.32x\)", " ".join(note.get_text().split()))
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_plot_notes_explain_the_pool_line_and_the_rss_gap():
    from mempool.tools.demo import plots
    recs, names, rows = _plot_data("mlp")
    rows["default"]["faults_per_step"] = 4000.0
    series = {a: plots.rss_series(plots._ok(recs, "mlp", a))[0] for a in names}
    text = plots.cache_note(series, rows)
    assert text.startswith("mempool's RSS is above the default's in 12 of 12 steps")
    assert "4,000 page faults a step against 5.0" in text
    rows["default"]["faults_per_step"] = 5.0    # no fault saving: not the cache's doing
    assert plots.cache_note(series, rows) is None
    gap = plots.gap_note(recs, "mlp")
    # 98 - 30 - 50 = 18 MB = (64 anon + 0 other - 50 pool) + 3.5 file + 0.5 heap
    assert gap.startswith("mempool's RSS at loop end is 18.0 MB above baseline + pool")
    assert "outside the pool +14.0 MB" in gap and "+3.5 MB" in gap and "+0.5 MB" in gap


def test_rss_series_prefers_the_per_step_peak():
    from mempool.tools.demo import plots
    recs, _, _ = _plot_data()
    rs = plots._ok(recs, "mlp", "default")
    assert plots.rss_series(rs)[1] == "step_peak_rss"
    for r in rs:
        del r["step_peak_rss"]
    series, key = plots.rss_series(rs)
    assert key == "step_rss" and series[0] == pytest.approx(90.0)


def test_step_peak_sees_a_peak_that_rss_after_the_step_misses():
    from mempool.tools.demo import child
    peak = child.StepPeak.open()
    if peak is None:
        pytest.skip("this kernel cannot reset the high-water mark (/proc/self/clear_refs)")
    try:
        rss = child.RssReader()
        peak.read_and_reset()
        a = np.ones(64 << 17)       # 64 MiB touched, then given back (glibc: munmap)
        del a
        after, high = rss(), peak.read_and_reset()
        assert high >= after + (48 << 20)
        assert peak.read_and_reset() < high - (48 << 20)   # restarted
        rss.close()
    finally:
        peak.close()
    kinds = child.memory_map()
    assert set(kinds) == {"file", "heap", "anon", "other"} and kinds["file"] > 0


def test_quick_runs_default_and_mempool_unless_told_otherwise():
    from mempool.tools.demo import chosen_allocators
    parse = build_parser().parse_args
    assert chosen_allocators(parse(["--quick"])) == ["default", "mempool"]
    assert chosen_allocators(parse([])) == list(runner.ALL_ALLOCATORS)
    assert chosen_allocators(parse(["--quick", "--allocators", "default,jemalloc"])) == \
        ["default", "jemalloc"]
