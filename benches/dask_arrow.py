"""Unmanaged memory of Dask workers on a dask.dataframe workload with pandas 3
string columns: Arrow's default pool (mimalloc), Arrow's system pool with
MALLOC_TRIM_THRESHOLD_=0 (glibc gives freed memory back at once: Dask's
remedy for unmanaged memory), and mempool for numpy and Arrow
(``MempoolPlugin(arrow=True)``).

A LocalCluster of 2 worker processes x 1 thread (127.0.0.1, 3 GiB each, no
spilling) writes a Parquet dataset of 16 partitions, then runs three phases,
each followed by an idle period: ``read_parquet`` (persisted), a ``groupby``
aggregation on a string key, and a ``merge`` with a string-keyed table, and
finally drops everything.  After each phase's idle the workers report their
process RSS and Dask's managed bytes: unmanaged = RSS - managed, above the
level after a warm-up.  Each configuration runs in its own driver process
with a fresh cluster, configurations interleaved round by round.

    pip install -e '.[dask-bench,arrow]'
    nice python benches/dask_arrow.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = ("arrow-mimalloc", "arrow-system-trim", "mempool")
ROWS, PARTITIONS, IDLE = 1_600_000, 16, 2.0
PHASES = ("read_parquet", "groupby", "merge", "dropped")


def _worker_memory(dask_worker=None):
    """(process RSS, Dask's managed bytes, Arrow's bytes in mempool or -1)."""
    import psutil
    import pyarrow as pa
    pool = getattr(dask_worker, "_mempool_plugin", None)
    arrow = -1
    if pool is not None and pool._pool.stats().arrow is not None:
        arrow = pool._pool.stats().arrow.bytes_allocated
    return (psutil.Process().memory_info().rss, dask_worker.state.nbytes,
            arrow if arrow >= 0 else pa.total_allocated_bytes())


def _write_dataset(folder: str) -> None:
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(0)
    per = ROWS // PARTITIONS
    for i in range(PARTITIONS):
        ids = rng.integers(0, 200_000, per)
        pd.DataFrame({"customer": pd.Series(ids).map("customer-{:07d}".format),
                      "city": rng.choice(["Oslo", "Lima", "Pune", "Kyoto", "Accra"], per),
                      "amount": rng.gamma(2.0, 50.0, per)}).to_parquet(f"{folder}/part{i:02d}.parquet")


def run_one(config: str) -> dict:
    """One driver: a fresh cluster under ``config``; unmanaged memory per
    worker (MiB above the warm-up level) after each phase."""
    import dask
    import dask.dataframe as dd
    import distributed
    import pandas as pd
    env = {}
    if config == "arrow-system-trim":
        env = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_TRIM_THRESHOLD_": "0"}
    folder = tempfile.mkdtemp(prefix="mempool-dask-arrow-")
    _write_dataset(folder)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {
            **dask.config.get("distributed.nanny.pre-spawn-environ"), **env},
            "distributed.worker.memory.spill": False,
            "distributed.worker.memory.target": False}):
        cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                           memory_limit="3GiB", host="127.0.0.1",
                                           dashboard_address="127.0.0.1:0",
                                           worker_dashboard_address="127.0.0.1:0")
        client = distributed.Client(cluster, timeout=60)
    try:
        client.wait_for_workers(2, timeout=60)
        if config == "mempool":
            from mempool.dask import MempoolPlugin
            client.register_plugin(MempoolPlugin(arrow=True))
        warm = dd.read_parquet(folder).head(1000)     # imports and first-use costs
        del warm
        time.sleep(IDLE)
        base = {a: m[0] - m[1] for a, m in client.run(_worker_memory).items()}
        started = time.monotonic()
        phases, held = [], {}
        keys = pd.DataFrame({"customer": [f"customer-{i:07d}" for i in range(0, 200_000, 3)]})
        keys["tier"] = keys["customer"].str[-1]
        for name in PHASES:
            if name == "read_parquet":
                held["df"] = dd.read_parquet(folder).persist()
                distributed.wait(held["df"])
            elif name == "groupby":
                held["agg"] = held["df"].groupby("customer")["amount"].sum().persist()
                distributed.wait(held["agg"])
            elif name == "merge":
                held["joined"] = held["df"].merge(dd.from_pandas(keys, npartitions=2),
                                                  on="customer").persist()
                distributed.wait(held["joined"])
            else:
                held.clear()
            time.sleep(IDLE)
            mem = client.run(_worker_memory)
            phases.append({"phase": name,
                           "unmanaged": {a: m[0] - m[1] - base[a] for a, m in mem.items()},
                           "managed": {a: m[1] for a, m in mem.items()},
                           "arrow_bytes": {a: m[2] for a, m in mem.items()}})
        return {"config": config, "seconds": time.monotonic() - started, "phases": phases}
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def _child(config: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--one", config],
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"{config} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def summarize(runs: list) -> str:
    """Median over rounds of the mean unmanaged MiB per worker after each phase."""
    lines = ["unmanaged MiB per worker above the warm-up level (mean of 2 workers, "
             "median of rounds), after each phase's idle",
             f"{'config':18s}{'seconds':>8s}" + "".join(f"{p:>14s}" for p in PHASES)]
    for c in CONFIGS:
        rs = [r for r in runs if r["config"] == c]
        if not rs:
            continue
        cells = [statistics.median(statistics.mean(r["phases"][i]["unmanaged"].values())
                                   for r in rs) / 2**20 for i in range(len(PHASES))]
        secs = statistics.median(r["seconds"] for r in rs)
        lines.append(f"{c:18s}{secs:8.1f}" + "".join(f"{v:14.1f}" for v in cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the comparison (or, with --one, one configuration's driver)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", default=None, help="write all runs here")
    ns = parser.parse_args(argv)
    if ns.one:
        print(json.dumps(run_one(ns.one)))
        return 0
    configs = [c for c in ns.configs.split(",") if c]
    runs = []
    for rnd in range(ns.rounds):
        for c in (configs if rnd % 2 == 0 else configs[::-1]):
            r = _child(c)
            runs.append(r)
            print(f"round {rnd + 1} {c}: {r['seconds']:.1f} s, unmanaged MiB after phases: "
                  + " ".join(f"{statistics.mean(p['unmanaged'].values()) / 2**20:.0f}"
                             for p in r["phases"]), file=sys.stderr, flush=True)
    print(summarize(runs))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(runs, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
