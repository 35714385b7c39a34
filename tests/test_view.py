"""``python -m mempool view``: the page's model, bad input, and the page in a
real browser (headless Chromium over the DevTools protocol): it renders, its
script reports no error, and the figures it shows equal the snapshot's,
before and after clicking, zooming and hovering.

The browser tests skip when no Chromium is installed; CI installs it
(.ci/run: apt-get install chromium).
"""
import base64
import gzip
import inspect
import json
import os
import re
import subprocess
import threading
import sys
from pathlib import Path

import numpy as np
import pytest

import mempool
from mempool import history
from mempool.errors import format_bytes
from mempool.snapshot import OPS, load
from mempool.tools import view
from mempool.tools.view import model
from mempool.tools.view.browser import Browser, find_chromium

ADDING = {"alloc", "calloc", "realloc", "move"}
ME = os.path.basename(__file__)


def _line():
    return inspect.currentframe().f_back.f_lineno


def _decode(col):
    dt = {"u8": "<u1", "i8": "<i1", "u16": "<u2", "i16": "<i2", "u32": "<u4", "i32": "<i4",
          "f64": "<f8"}[col["t"]]
    return np.frombuffer(base64.b64decode(col["b"]), dtype=dt, count=col["n"])


# ----------------------------------------------------------------- model --

def test_column_picks_the_narrowest_exact_type():
    cases = [([0, 255], "u8"), ([-1, 5], "i8"), ([0, 65535], "u16"), ([-300, 3], "i16"),
             ([0, 2**32 - 1], "u32"), ([-1, 2**31 - 1], "i32"), ([0, 2**47 + 3], "f64"),
             ([-5, 2**32], "f64")]
    for values, kind in cases:
        col = model.column(np.array(values))
        assert col["t"] == kind, values
        assert _decode(col).astype(np.int64).tolist() == values
    assert model.column(np.zeros(0, np.int64))["n"] == 0


def test_pair_events_pairs_frees_reallocs_moves_and_orphans():
    o = {name: i for i, name in enumerate(OPS)}
    events = [  # op, address, size, stack
        ("alloc", 100, 10, 1),          # 0: freed at 2
        ("calloc", 200, 20, 2),         # 1: realloc'd at 3/4
        ("free", 100, 10, 1),           # 2
        ("realloc_free", 200, 20, 2),   # 3
        ("realloc", 300, 30, 5),        # 4: moved at 6/7
        ("free", 900, 90, -1),          # 5: an orphan: live before the first event
        ("move_free", 300, 30, 5),      # 6
        ("move", 400, 30, 5),           # 7: still live
        ("alloc", 100, 11, 3),          # 8: the address again, still live
    ]
    op, addr, size, stack = (np.array(c) for c in zip(*events))
    op = np.array([o[x] for x in op])
    allocs = model.pair_events(op, addr, size, stack, [o[x] for x in ADDING])
    got = sorted(zip(*(allocs[k].tolist() for k in ("start", "end", "address", "size",
                                                      "stack"))))
    assert got == [(-1, 5, 900, 90, -1), (0, 2, 100, 10, 1), (1, 3, 200, 20, 2),
                   (4, 6, 300, 30, 5), (7, 9, 400, 30, 5), (8, 9, 100, 11, 3)]
    assert allocs["start"].tolist() == sorted(allocs["start"].tolist())


def _replay(data):
    """Live blocks after each event of a snapshot's history, by a plain
    dictionary replay (independent of the viewer's model): the live bytes
    series and the live blocks {address: (size, stack)} at chosen moments."""
    h = data["history"]
    ops = h["ops"]
    ev = h["events"]
    live, total, series = {}, 0, []
    for i in range(ev["count"]):
        a, s = ev["address"][i], ev["size"][i]
        if ops[ev["op"][i]] in ADDING:
            live[a] = (s, ev["stack"][i])
            total += s
        else:
            total -= live.pop(a)[0]
        series.append(total)
    return series


def _live_at(data, moment):
    h = data["history"]
    ev, ops, live = h["events"], h["ops"], {}
    for i in range(moment + 1):
        a = ev["address"][i]
        if ops[ev["op"][i]] in ADDING:
            live[a] = (ev["size"][i], ev["stack"][i])
        else:
            del live[a]
    return live


def _program_line(data, stack):
    """This file's line in a stack (the program's own line here)."""
    f, s = data["frames"], data["strings"]
    for fid in data["stacks"][stack]:
        if os.path.basename(s[f["file"][fid]]) == ME:
            return f["line"][fid]
    return None


def _by_line(data, live):
    out = {}
    for size, stack in live.values():
        line = _program_line(data, stack)
        b, n = out.get(line, (0, 0))
        out[line] = (b + size, n + 1)
    return sorted(out.items(), key=lambda kv: -kv[1][0])


def _workload(pool):
    """Arrays of every layer made at known lines, temporaries, a realloc,
    movable buffers moved by defragment(), pages given back."""
    lines = {}
    keep = [np.ones(50_000)]; lines["keep"] = _line()                     # noqa: E702
    big = np.zeros((1500, 1000)); lines["big"] = _line()                  # noqa: E702
    small = [np.empty(100) for _ in range(300)]; lines["small"] = _line()  # noqa: E702
    for i in range(40):
        tmp = np.ones(20_000 + 1000 * i)
        tmp2 = tmp * 2.0
        del tmp, tmp2
    grown = np.zeros(100)
    grown.resize(30_000, refcheck=False)
    bufs = [pool.buffer(1 << 16) for _ in range(3)]
    bufs[0].free()
    pool.defragment()
    del small[::2]
    del big
    pool.trim()
    return keep, small, grown, bufs, lines


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A snapshot with a history, written to a file, and the arrays it holds."""
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, stacks=8):
        held = _workload(pool)
        snap = pool.snapshot()
        stats = pool.stats()
    path = tmp_path_factory.mktemp("view") / "run.json"
    snap.dump(path)
    return path, json.loads(path.read_text()), stats, held


def test_model_figures_equal_a_plain_replay(recorded):
    path, data, stats, held = recorded
    m = model.build(load(path).data)
    series = _replay(data)
    assert series[-1] == stats.live_bytes == data["stats"]["live_bytes"]
    a = {k: _decode(v).astype(np.int64) for k, v in m["history"]["allocs"].items()}
    site_of = _decode(m["sites"]["site_of_stack"]).astype(np.int64)
    a["site"] = site_of[a["stack"] + 2]
    peak = int(np.argmax(series))
    live = _live_at(data, peak)
    top = model.top_sites_at(a, peak)
    assert sum(t["bytes"] for t in top) == series[peak]
    assert sum(t["blocks"] for t in top) == len(live)
    expect = _by_line(data, live)
    assert top[0]["bytes"] == expect[0][1][0] and top[0]["blocks"] == expect[0][1][1]
    label = m["sites"]["label"][top[0]["site"]]
    assert label.startswith(f"{ME}:{expect[0][0]} in ")
    # the bands: every site with a block has one, or "other"
    band_of = _decode(m["bands"]["band_of_site"])
    assert len(band_of) == len(m["sites"]["label"])
    assert max(band_of) < len(m["bands"]["bands"])


def test_sites_are_program_lines_not_library_frames():
    data = {"strings": ["/x/lib/python3.11/site-packages/numpy/_core/numeric.py", "ones",
                        "/home/u/job.py", "main", "/venv/lib/python3.12/site-packages/pandas/x.py",
                        "merge", "/home/u/other/job.py"],
            "frames": {"file": [0, 2, 4, 2, 6], "line": [232, 10, 99, 11, 5],
                       "function": [1, 3, 5, 3, 3], "library": [1, 0, 0, 0, 0]},
            "stacks": [[0, 1], [2, 1], [2, 3], [4], [0]]}
    s = model.sites(data)
    site = [int(x) for x in s["site_of_stack"][2:]]
    assert s["label"][site[0]] == "job.py:10 in main"
    assert site[0] == site[1]                  # pandas' frame is not the program's line
    assert s["label"][site[2]] == "job.py:11 in main"
    assert s["label"][site[3]] == "other/job.py:5 in main"   # same name, another file
    assert s["label"][site[4]] == "numeric.py:232 in ones"   # no program frame at all
    assert s["nstacks"][site[0]] == 2
    assert int(s["site_of_stack"][0]) == model.NO_GIL_SITE
    assert int(s["site_of_stack"][1]) == model.UNKNOWN_SITE


def test_a_snapshot_without_history_still_makes_a_page(tmp_path):
    pool = mempool.Pool()
    with mempool.use(pool):
        arrays = [np.ones(1000) for _ in range(10)]
        snap = pool.snapshot()
    page = view.write_html(snap, tmp_path / "p.html")
    text = page.read_text()
    m = json.loads(re.search(r'id="mempool-data">(.*?)</script>', text, re.S).group(1))
    assert m["snapshots"][0]["history"] is None
    assert m["snapshots"][0]["stats"]["live_bytes"] == 10 * 8000
    del arrays


# ------------------------------------------------------------------- CLI --

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mempool", "view", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_writes_one_self_contained_page(recorded, tmp_path):
    path = recorded[0]
    res = _cli(path, "-o", tmp_path / "page.html")
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout
    text = (tmp_path / "page.html").read_text()
    assert "<script src" not in text and "<link" not in text
    assert not re.search(r"https?://", text.split('id="mempool-data"')[0])
    assert "import " not in text.split("<script>")[1].split("</script>")[0][:200]
    # default name: next to the snapshot; gzip; several and a directory
    gz = tmp_path / "run.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert _cli(gz).returncode == 0
    assert (tmp_path / "run.html").exists()
    res = _cli(path, gz, cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "mempool-view.html").exists()
    assert "2 snapshots" in res.stdout
    (tmp_path / "copy.json").write_bytes(path.read_bytes())
    res = _cli(tmp_path, "-o", tmp_path / "dir.html")
    assert res.returncode == 0 and "2 snapshots" in res.stdout


def _bad_inputs(tmp_path, good):
    data = json.loads(good.read_text())
    cases = {}

    def write(name, text=None, raw=None):
        p = tmp_path / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            p.write_text(text)
        return p

    cases["not JSON"] = write("a.json", "this is not json")
    cases["empty"] = write("b.json", "")
    cases["truncated"] = write("c.json", good.read_text()[: len(good.read_text()) // 2])
    cases["foreign JSON"] = write("d.json", json.dumps({"segments": [], "device_traces": []}))
    cases["a JSON list"] = write("e.json", "[1, 2, 3]")
    cases["wrong format"] = write("f.json", json.dumps({**data, "format": "pytorch"}))
    cases["version 2"] = write("g.json", json.dumps({**data, "version": 2}))
    cases["corrupt gzip"] = write("h.json.gz", raw=b"\x1f\x8b\x08garbage")
    cases["binary"] = write("i.json", raw=bytes(range(256)))
    no_blocks = dict(data)
    del no_blocks["blocks"]
    cases["no blocks"] = write("j.json", json.dumps(no_blocks))
    short = json.loads(good.read_text())
    short["blocks"]["size"] = short["blocks"]["size"][:-1]
    cases["columns of unequal length"] = write("k.json", json.dumps(short))
    bad_state = json.loads(good.read_text())
    bad_state["blocks"]["state"][0] = 99
    cases["a state out of range"] = write("l.json", json.dumps(bad_state))
    bad_hist = json.loads(good.read_text())
    bad_hist["history"]["events"]["count"] += 5
    cases["history count wrong"] = write("m.json", json.dumps(bad_hist))
    cases["missing file"] = tmp_path / "nope.json"
    (tmp_path / "empty-dir").mkdir()
    cases["empty directory"] = tmp_path / "empty-dir"
    return cases


def test_bad_snapshots_get_one_line_and_exit_2(recorded, tmp_path, capsys):
    for what, path in _bad_inputs(tmp_path, recorded[0]).items():
        rc = view.main([str(path), "-o", str(tmp_path / "out.html")])
        err = capsys.readouterr().err
        assert rc == 2, what
        lines = err.strip().splitlines()
        assert len(lines) == 1, (what, err)
        assert lines[0].startswith("python -m mempool view: "), (what, err)
        assert str(path.name) in lines[0], (what, err)
        assert "Traceback" not in err
    assert not (tmp_path / "out.html").exists()


def test_bad_snapshot_through_the_real_command(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"format": "mempool-snapshot", "version": 7}')
    res = _cli(p)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"python -m mempool view: {p}: snapshot version 7; this mempool reads version 1"]
    assert _cli().returncode == 2       # no file: argparse's usage error


def test_write_html_rejects_what_is_not_a_snapshot(tmp_path):
    with pytest.raises(TypeError, match="Snapshot"):
        view.write_html(["run.json"], tmp_path / "x.html")
    with pytest.raises(ValueError, match="at least one"):
        view.write_html([], tmp_path / "x.html")


# --------------------------------------------------------------- browser --

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="no Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1400, height=1000, timeout=90) as b:
        yield b


def _figures(b, panel=0):
    return b.eval(f"""(() => {{ const out = {{}};
        document.querySelectorAll('[data-snapshot="{panel}"] [data-fig]').forEach((e) => {{
          if (!(e.dataset.fig in out)) out[e.dataset.fig] = [e.dataset.value, e.textContent]; }});
        return out; }})()""")


def _check_shown(figs, name, value):
    shown_value, text = figs[name]
    assert int(shown_value) == value, (name, shown_value, value)
    assert text == format_bytes(value), (name, text, format_bytes(value))


def _no_errors(b):
    assert b.errors() == []
    assert b.eval("document.body.dataset.errors") == "0"
    assert b.eval("document.getElementById('errors').textContent") == ""


def _painted(b, role):
    """Share of a canvas's pixels that are neither blank nor the plot's
    background: 0 when nothing was drawn."""
    return b.eval(f"""(() => {{ const c = document.querySelector('[data-role={role}]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) {{
          if (d[i + 3] > 0 && !(d[i] > 235 && d[i + 1] > 235 && d[i + 2] > 235)) n++; }}
        return n / (d.length / 4); }})()""")


@needs_chromium
def test_page_renders_and_shows_the_snapshots_figures(recorded, browser, tmp_path):
    path, data, stats, held = recorded
    page = view.write_html(load(path), tmp_path / "page.html")
    seconds = browser.open(page)
    assert seconds < 60
    _no_errors(browser)
    figs = _figures(browser)
    series = _replay(data)
    peak = int(np.argmax(series))
    _check_shown(figs, "live-bytes", stats.live_bytes)
    _check_shown(figs, "history-live-bytes", stats.live_bytes)
    _check_shown(figs, "history-peak-bytes", series[peak])
    _check_shown(figs, "resident-bytes", data["stats"]["resident_bytes"])
    assert int(figs["events"][0]) == data["history"]["events"]["count"]
    assert int(figs["segments"][0]) == data["segments"]["count"]
    assert int(figs["blocks"][0]) == data["blocks"]["count"]
    # the top call site at the peak: its bytes and blocks, named by its line
    expect = _by_line(data, _live_at(data, peak))
    _check_shown(figs, "top-site-bytes", expect[0][1][0])
    assert int(figs["top-site-blocks"][0]) == expect[0][1][1]
    first_row = browser.eval("document.querySelector('[data-role=top-sites] tr[data-site] "
                             "td.site').textContent")
    assert first_row.startswith(f"{ME}:{expect[0][0]} in ")
    # why it is held: the parts equal the snapshot's totals
    t = data["totals"]["bytes"]
    _check_shown(figs, "held-free", t["free"])
    _check_shown(figs, "held-outside",
                 data["stats"]["process_rss_bytes"] - data["stats"]["resident_bytes"])
    assert _painted(browser, "timeline") > 0.05
    assert _painted(browser, "state") > 0.05


@needs_chromium
def test_the_page_writes_bytes_as_python_does(recorded, browser, tmp_path):
    browser.open(view.write_html(load(recorded[0]), tmp_path / "page.html"))
    rng = np.random.default_rng(3)
    values = [0, 1, 1023, 1024, 1536, 800000, 1048575, 1048576, 3 << 29, 2**47 + 12345,
              -2048, -310_300] + [int(x) for x in rng.integers(0, 2**40, 300)] + \
        [int(k * 256) for k in range(1, 4000, 7)]
    shown = browser.eval(f"{json.dumps(values)}.map((v) => window.mempoolView.fmtBytes(v))")
    assert shown == [format_bytes(v) for v in values]


@needs_chromium
def test_clicking_zooming_and_hovering(recorded, browser, tmp_path):
    path, data, stats, held = recorded
    page = view.write_html(load(path), tmp_path / "page.html")
    browser.open(page)
    series = _replay(data)
    x, y, w, h = browser.eval("""(() => { const c = document.querySelector('[data-role=timeline]');
        c.scrollIntoView(); const r = c.getBoundingClientRect();
        return [r.left, r.top, r.width, r.height]; })()""")
    plot_x0, plot_w = x + 64, w - 74          # js/timeline.js: PAD_L, PAD_L + PAD_R
    # hover: a tooltip naming a site, its bytes and the moment
    browser.mouse("mouseMoved", plot_x0 + plot_w * 0.9, y + h - 40)
    tip = browser.eval("document.getElementById('tip').innerText")
    assert "live" in tip and "event" in tip
    # click: the allocator state at that moment equals a replay up to it
    browser.click(plot_x0 + plot_w * 0.6, y + h / 2)
    moment = browser.eval("window.mempoolView.panels[0].moment")
    assert moment is not None and 0 <= moment < len(series)
    figs = _figures(browser)
    live = _live_at(data, moment)
    _check_shown(figs, "moment-live-bytes", series[moment])
    assert int(figs["moment-blocks"][0]) == len(live)
    # the top sites at that moment
    browser.eval("(() => { const s = document.querySelector('[data-snapshot=\"0\"] h3 select');"
                 " s.value = 'moment'; s.dispatchEvent(new Event('change')); })()")
    figs = _figures(browser)
    expect = _by_line(data, live)
    _check_shown(figs, "top-site-bytes", expect[0][1][0])
    # back to the snapshot, then the sites at the snapshot: its live blocks by line
    browser.eval("window.mempoolView.panels[0].select(null)")
    browser.eval("(() => { const s = document.querySelector('[data-snapshot=\"0\"] h3 select');"
                 " s.value = 'snapshot'; s.dispatchEvent(new Event('change')); })()")
    figs = _figures(browser)
    b = data["blocks"]
    held_states = {data["block_states"].index(s) for s in ("live", "buffer", "pinned")}
    at_snap = {b["address"][i]: (b["requested"][i], b["site"][i]) for i in range(b["count"])
               if b["state"][i] in held_states and b["site"][i] >= 0}
    _check_shown(figs, "top-site-bytes", _by_line(data, at_snap)[0][1][0])
    # drag to zoom: fewer events in view, per-block bands, then zoom out
    browser.eval("document.querySelector('[data-role=timeline]').scrollIntoView()")
    x, y, w, h = browser.eval("(() => { const r = document.querySelector("
                              "'[data-role=timeline]').getBoundingClientRect();"
                              " return [r.left, r.top, r.width, r.height]; })()")
    browser.drag(plot_x0 + plot_w * 0.45, y + h / 2, plot_x0 + plot_w * 0.5, y + h / 2)
    span = browser.eval("(() => { const v = window.mempoolView.panels[0].timeline.view;"
                        " return v.b - v.a; })()")
    assert 0 < span < len(series) * 0.2
    assert browser.eval("window.mempoolView.panels[0].timeline.perBlock") is True
    browser.mouse("mouseMoved", plot_x0 + plot_w * 0.5, y + h - 40)
    assert "bytes" in browser.eval("document.getElementById('tip').innerText")
    browser.eval("window.mempoolView.panels[0].timeline.setMode('time')")
    browser.click(plot_x0 + plot_w * 0.3, y + h / 2)
    browser.mouse("mouseMoved", plot_x0 + plot_w * 0.3, y + 8)   # the pool-event lane
    browser.eval("window.mempoolView.panels[0].timeline.reset()")
    # the allocator state: hovering a row names a block
    sx, sy = browser.eval("""(() => { const c = document.querySelector('[data-role=state]');
        c.scrollIntoView(); const r = c.getBoundingClientRect(); return [r.left, r.top]; })()""")
    browser.mouse("mouseMoved", sx + 178 + 5, sy + 2 + 10)
    assert "0x" in browser.eval("document.getElementById('tip').innerText")
    _no_errors(browser)


@needs_chromium
def test_several_snapshots_side_by_side(recorded, browser, tmp_path):
    pool = mempool.Pool()
    with mempool.use(pool):
        arrays = [np.ones(5000) for _ in range(20)]
        plain = pool.snapshot()                 # no history
    plain.data["process"]["label"] = "tcp://127.0.0.1:4242"
    page = view.write_html([load(recorded[0]), plain], tmp_path / "two.html")
    browser.open(page)
    _no_errors(browser)
    labels = browser.eval("[...document.querySelectorAll('section.panel')]"
                          ".map((e) => e.dataset.label)")
    assert labels == [recorded[1]["process"]["label"], "tcp://127.0.0.1:4242"]
    figs = _figures(browser, panel=1)
    _check_shown(figs, "live-bytes", plain.stats["live_bytes"])
    assert int(figs["segments"][0]) == plain.data["segments"]["count"]
    _check_shown(figs, "top-site-bytes", 20 * 40000)   # at the snapshot: site unknown
    assert browser.eval("document.querySelectorAll('#compare tr').length") == 3
    # side by side on a wide screen, one above the other on a narrow one
    browser.resize(2400, 1000)
    browser.eval("window.dispatchEvent(new Event('resize'))")
    tops = browser.eval("[...document.querySelectorAll('section.panel')]"
                        ".map((e) => e.getBoundingClientRect().top)")
    assert tops[0] == tops[1]
    browser.resize(1400, 1000)
    del arrays


def _edge_snapshots():
    """Snapshots that stress the page: an empty pool, a history without
    events, one that only frees, a ring that dropped most events (with
    threads, meshing, buffers, a refused request), a stopped recording."""
    out = []
    out.append(mempool.Pool().snapshot())
    pool = mempool.Pool()
    with history.record(pool):
        out.append(pool.snapshot())
    pool = mempool.Pool()
    with mempool.use(pool):
        a = np.ones(10)
        with history.record(pool):
            del a
            out.append(pool.snapshot())
    pool = mempool.Pool(capacity=600 << 20, mesh=True)
    with mempool.use(pool):
        before = [np.ones(3000) for _ in range(20)]
        with history.record(pool, stacks=4, max_entries=500):
            arrays = [np.empty(32) for _ in range(3000)]
            kept = arrays[::29]
            del arrays
            pool.trim()

            def work():
                with mempool.use(pool):
                    kept.extend(np.ones(100 + i) for i in range(100))
            threads = [threading.Thread(target=work) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with pytest.raises(MemoryError):
                pool.empty(900 << 20)
            bufs = [pool.buffer(1 << 15) for _ in range(4)]
            pinned = bufs[2].array(8)
            bufs[0].free()
            pool.defragment()
            out.append(pool.snapshot())
        with history.record(pool):
            more = [np.ones(1000) for _ in range(10)]
        del more[:5]
        out.append(pool.snapshot())
    return out, (before, kept, bufs, pinned, more)


@needs_chromium
def test_edge_snapshots_render_without_errors(browser, tmp_path):
    snaps, held = _edge_snapshots()
    browser.open(view.write_html(snaps, tmp_path / "edge.html"))
    _no_errors(browser)
    for i, snap in enumerate(snaps):
        figs = _figures(browser, panel=i)
        _check_shown(figs, "live-bytes", snap.stats["live_bytes"])
        assert int(figs["segments"][0]) == snap.data["segments"]["count"]
        assert int(figs["blocks"][0]) == snap.data["blocks"]["count"]
        h = snap.history
        if h is not None and h["recording"] and h["events"]["count"]:
            # blocks made before the first event kept count from the start
            _check_shown(figs, "history-live-bytes", snap.stats["live_bytes"])
    assert snaps[3].history["dropped"] > 0
    kinds = browser.eval("[...document.querySelectorAll('[data-snapshot=\"3\"] .legend .t')]"
                         ".map((e) => e.textContent).join('|')")
    for text in ("PoolExhausted", "moved by defragment", "pages given back"):
        assert text in kinds
    for i in range(len(snaps)):       # every panel's moments, clicked through
        browser.eval(f"(() => {{ const p = window.mempoolView.panels[{i}]; if (!p.timeline) return;"
                     " for (const m of [-1, 0, p.d.n - 1, p.d.peak]) p.select(m); p.select(null);"
                     " p.timeline.setMode('time'); })()")
    _no_errors(browser)
    del held
