"""A pandas workload with its history recorded, for the viewer (the
README's docs/viewer-pandas.png): a long-lived fact table, then rounds of
merge, sort, group-by and pivot on slices of drifting size.

    python docs/examples/viewer_pandas.py [OUT.json] [--rows 400000]
    python -m mempool view OUT.json          # -> OUT.html

Its numeric columns are numpy arrays in the pool; pandas 3 keeps the
string column in Arrow's memory, which the viewer shows outside the pool.
"""
import argparse

import numpy as np
import pandas as pd

import mempool
from mempool import history


def fact_table(rng, rows):
    return pd.DataFrame({
        "key": rng.integers(0, rows // 50 + 1, rows),
        "cat": pd.Categorical.from_codes(rng.integers(0, 12, rows), [f"c{i}" for i in range(12)]),
        "a": rng.standard_normal(rows),
        "b": rng.exponential(2.0, rows),
        "t": rng.integers(0, 1000, rows),
        "name": [f"item-{i % 5000}" for i in range(rows)],
    })


def one_round(rng, facts, rows):
    dim = pd.DataFrame({"key": rng.integers(0, len(facts) // 50 + 1, rows),
                        "w": rng.uniform(0, 1, rows)}).drop_duplicates("key")
    merged = facts.merge(dim, on="key", how="inner")
    merged = merged.sort_values(["cat", "t", "a"], kind="stable")
    merged["a_dm"] = merged["a"] - merged.groupby("cat", observed=True)["a"].transform("mean")
    agg = merged.groupby("key").agg(a_mean=("a", "mean"), b_sum=("b", "sum"), w_max=("w", "max"))
    pivot = merged.pivot_table(index="cat", columns=merged["t"] // 250, values="w",
                               aggfunc="sum", observed=True)
    return agg, pivot


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="pandas-history.json")
    parser.add_argument("--rows", type=int, default=400_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, stacks=24):
        facts = fact_table(rng, args.rows)
        results = []
        for rows in (args.rows // 8, args.rows // 3, args.rows // 2, args.rows // 5, args.rows // 4):
            results.append(one_round(rng, facts, rows))
        snap = pool.snapshot()
    snap.dump(args.out)
    print(f"{args.out}: {snap.summary()}")


if __name__ == "__main__":
    main()
