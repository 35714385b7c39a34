"""The Arrow workload of the real-library suite, run as a child process:
pandas 3 with pyarrow (string columns), in batches of drifting size: build a
frame, ``groupby``, ``merge``, ``str`` methods, ``to_parquet`` /
``read_parquet`` round trip and ``pyarrow.parquet.read_table().to_pandas()``.

``python arrow_workload.py CONFIG_JSON`` prints one JSON record.  It never
imports mempool itself: the mempool rows get the pool from the start-up
install (``MEMPOOL_INSTALL=1``, ``MEMPOOL_ARROW=1``), the others their Arrow
pool from ``ARROW_DEFAULT_MEMORY_POOL``, as an unchanged program would.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import sys
import tempfile
import time


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def work(n: int, seed: int, folder: str) -> list:
    """The workload: batches of drifting size; returns small outputs whose
    digest must not depend on the allocator."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    outputs = []
    for step, scale in enumerate((0.6, 1.0, 0.75, 1.3, 0.9)):
        rows = int(n * scale)
        ids = rng.integers(0, max(10, rows // 20), rows)
        df = pd.DataFrame({
            "customer": pd.Series(ids).map("customer-{:07d}".format),
            "city": rng.choice(["Oslo", "Lima", "Pune", "Kyoto", "Accra", "Quito"], rows),
            "amount": rng.gamma(2.0, 50.0, rows),
            "qty": rng.integers(1, 20, rows),
        })
        dim = pd.DataFrame({"customer": pd.Series(np.unique(ids)).map("customer-{:07d}".format)})
        dim["segment"] = dim["customer"].str[-2:].map(lambda s: "seg-" + s)
        by_customer = df.groupby("customer").agg(total=("amount", "sum"), n=("qty", "size"))
        joined = df.merge(dim, on="customer", how="left")
        by_segment = joined.groupby(["segment", "city"])["amount"].mean()
        text = pd.DataFrame({"upper": df["customer"].str.upper(),
                             "tail": df["customer"].str.split("-").str[1],
                             "long_city": df["city"].str.len() > 4,
                             "hit": df["customer"].str.contains("77")})
        path = os.path.join(folder, f"batch{step}.parquet")
        joined.to_parquet(path)
        back = pd.read_parquet(path)
        table = pq.read_table(path, columns=["customer", "segment", "amount"])
        frame = table.to_pandas()
        outputs.append(by_customer.head(50))
        outputs.append(by_segment)
        outputs.append(int(text["hit"].sum()) + int(text["long_city"].sum()))
        outputs.append(text["tail"].iloc[:100].tolist())
        outputs.append(float(back["amount"].sum()) + float(frame["amount"].sum()))
        del df, dim, by_customer, joined, text, back, table, frame
    return outputs


def digest(outputs: list) -> str:
    """A digest of the outputs (identical under every allocator)."""
    import pandas as pd
    h = hashlib.sha256()
    for out in outputs:
        if isinstance(out, (pd.DataFrame, pd.Series)):
            h.update(pd.util.hash_pandas_object(out, index=True).values.tobytes())
        else:
            h.update(repr(out).encode())
    return h.hexdigest()[:16]


def main(cfg: dict) -> dict:
    """Run once, measured; the record."""
    import numpy  # noqa: F401  (import cost is not the work)
    import pandas  # noqa: F401
    import pyarrow
    import pyarrow.parquet  # noqa: F401
    gc.collect()
    record = {"row": cfg["row"], "round": cfg["round"], "n": cfg["n"],
              "arrow_backend": pyarrow.default_memory_pool().backend_name,
              "baseline_rss": _rss()}
    with tempfile.TemporaryDirectory(prefix="mempool-arrow-bench-") as folder:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        c0, t0 = time.process_time(), time.perf_counter()
        outputs = work(cfg["n"], cfg["seed"], folder)
        t1, c1 = time.perf_counter(), time.process_time()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    record.update(wall_s=t1 - t0, cpu_s=c1 - c0,
                  faults=(ru1.ru_minflt - ru0.ru_minflt) + (ru1.ru_majflt - ru0.ru_majflt),
                  peak_rss=ru1.ru_maxrss * 1024, rss_end_of_work=_rss(),
                  digest=digest(outputs))
    del outputs
    gc.collect()
    time.sleep(cfg["settle_s"])        # idle, as a service between requests: no trim()
    record["rss_after"] = _rss()
    mempool = sys.modules.get("mempool")
    if mempool is not None and mempool.installed() is not None:
        st = mempool.installed().stats()
        record["pool"] = {"live_bytes": st.live_bytes, "resident_bytes": st.resident_bytes,
                          "peak_resident_bytes": st.peak_resident_bytes,
                          "arrow": None if st.arrow is None else vars(st.arrow)}
        if st.arrow is not None:
            record["arrow_own_backend"] = mempool.arrow.default_backend_stats()
    return record


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
