"""How fast ``python -m mempool view`` pages render: a 1 M-event history in
headless Chromium (the issue's target: under 3 s), the page's size, and how
long a zoom and a click on the timeline take there.

    python benches/viewer_render.py [--events 1000000] [--loads 3] [--keep DIR]

A child process records a synthetic training-style workload under
``mempool.history.record(stacks=8, max_entries=EVENTS)`` until the ring holds
EVENTS events: 24 call sites, small and large arrays, a rolling window of
live arrays, movable buffers moved by ``defragment()``, ``trim()`` (pages
given back).  Its snapshot is written, ``view`` turns it into a page, and
Chromium (DevTools protocol over a pipe, mempool.tools.view.browser) loads
it LOADS times in fresh tabs.  Reported, each as the median over the loads:

- load: from navigation to the page saying it has drawn everything
  (document.body.dataset.rendered), measured outside the page;
- in-page: the page's own clock (performance.now() at the end of drawing,
  i.e. since navigation start);
- zoom and click: a drag on the timeline (re-bucketing the events in view)
  and a click (the allocator state at that moment), measured in the page.

Needs Chromium (apt-get install chromium).  Timings swing with the
machine's load: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD = r'''
import sys
import numpy as np
import mempool
from mempool import history

events, out = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
pool = mempool.Pool()


def small(i):
    return np.empty(int(rng.integers(8, 4000)))           # slab blocks


def medium(i):
    return np.ones(int(rng.integers(5_000, 60_000)))      # the page heap


def large(i):
    return np.zeros(int(rng.integers(600_000, 2_000_000)))  # the huge-page heap


def activations(batch):
    x = np.ones((batch, 256), np.float32)
    h = np.maximum(x @ W1, 0)
    return (h @ W2).sum(axis=1)


W1 = np.ones((256, 512), np.float32)
W2 = np.ones((512, 64), np.float32)
with mempool.use(pool), history.record(pool, stacks=8, max_entries=events) as rec:
    window, kept, step = [], [], 0
    bufs = [pool.buffer(1 << 16) for _ in range(8)]
    while rec.info()["recorded"] < events:
        step += 1
        for i in range(20):
            window.append(small(i))
        window.append(medium(step))
        if step % 7 == 0:
            window.append(large(step))
        activations(int(rng.integers(16, 256)))
        if step % 50 == 0:
            kept.append(np.array(window[-3:], dtype=object))
        if len(window) > 400:
            del window[:len(window) - 300]
        if step % 500 == 0:
            bufs[step // 500 % len(bufs)].free()
            bufs[step // 500 % len(bufs)] = pool.buffer(1 << 16)
            pool.defragment()
        if step % 2000 == 0:
            pool.trim()
    snap = pool.snapshot()
snap.dump(out)
print(rec.info()["recorded"], snap.data["history"]["events"]["count"])
'''


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="keep the snapshot and the page in DIR")
    args = parser.parse_args(argv)
    from mempool.tools.view.browser import Browser, find_chromium
    if find_chromium() is None:
        print("needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory()
    where = Path(args.keep or tmp.name)
    where.mkdir(parents=True, exist_ok=True)
    script, snap, page = where / "workload.py", where / "history.json", where / "history.html"
    script.write_text(WORKLOAD)
    t0 = time.perf_counter()
    rec = subprocess.run([sys.executable, str(script), str(args.events), str(snap)],
                         check=True, capture_output=True, text=True).stdout.split()
    t_rec = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mempool", "view", str(snap), "-o", str(page)],
                   check=True, capture_output=True)
    t_view = time.perf_counter() - t0
    loads, in_page, zooms, clicks = [], [], [], []
    with Browser(width=1600, height=1200, timeout=120) as b:
        for _ in range(args.loads):
            b.call("Page.navigate", {"url": "about:blank"})
            b.wait_event("Page.loadEventFired")
            loads.append(b.open(page))
            in_page.append(float(b.eval("document.body.dataset.totalMs")) / 1e3)
            errors = b.errors()
            if errors:
                print("page errors:", errors, file=sys.stderr)
                return 1
            zooms.append(b.eval("""(() => { const tl = window.mempoolView.panels[0].timeline;
                const t = performance.now(); tl.view = {a: tl.view.a + (tl.view.b - tl.view.a) * 0.4,
                b: tl.view.a + (tl.view.b - tl.view.a) * 0.45}; tl.render();
                return performance.now() - t; })()""") / 1e3)
            clicks.append(b.eval("""(() => { const p = window.mempoolView.panels[0];
                const t = performance.now(); p.select(p.timeline.mom[Math.floor(p.timeline.W / 2)]);
                return performance.now() - t; })()""") / 1e3)
    load = os.getloadavg()[0]
    out = {"events": int(rec[1]), "recorded": int(rec[0]), "snapshot_mb": snap.stat().st_size / 1e6,
           "page_mb": page.stat().st_size / 1e6, "record_s": t_rec, "view_s": t_view,
           "load_s": _median(loads), "in_page_s": _median(in_page), "zoom_s": _median(zooms),
           "click_s": _median(clicks), "loads": loads, "load_average": load}
    print(json.dumps(out, indent=1))
    verdict = "met" if out["load_s"] < 3.0 else "MISSED"
    print(f"\n{out['events']:,} events: page {out['page_mb']:.1f} MB (snapshot "
          f"{out['snapshot_mb']:.1f} MB), view wrote it in {t_view:.1f} s; Chromium renders it in "
          f"{out['load_s']:.2f} s (in-page clock {out['in_page_s']:.2f} s; target < 3 s: "
          f"{verdict}); zoom {1e3 * out['zoom_s']:.0f} ms, click {1e3 * out['click_s']:.0f} ms; "
          f"load average {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
