"""The real-library suite's workloads: ordinary scikit-learn, pandas, scipy
and numpy code that knows nothing of the allocator it runs under.

Each workload is a function ``fn(n, seed) -> list`` of outputs (arrays,
frames or numbers) whose digest must be identical under every allocator;
``n`` sets its size (``Workload.full`` for the suite, ``Workload.quick`` for
``--quick`` runs and the tuning corpus).  This module is loaded by file path
in the children, so it must not import mempool.

The sizes drift on purpose in most workloads (the sequence of array sizes
is not stationary), the way real code's shapes change between batches,
files or hyper-parameters.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One workload of the suite and what it needs."""

    fn: Callable[[int, int], List[Any]]
    full: int
    quick: int
    #: Modules to import before the measured part (import cost is not the work).
    imports: Tuple[str, ...]
    pattern: str
    #: BLAS/OpenMP threads for this workload (None: the library's default,
    #: one per core); one by default so that idle BLAS workers spinning on two
    #: shared cores do not swamp the allocator's share of the time.
    threads: Optional[int] = 1
    #: Size recorded into the tuning corpus (None: ``full``); smaller where
    #: the full size's trace would be megabytes of events.
    corpus: Optional[int] = None

    @property
    def libs(self) -> Tuple[str, ...]:
        """Top-level libraries used (for the "what to install" message)."""
        return tuple(sorted({m.split(".")[0] for m in self.imports}))


def _drift(lo: int, hi: int, steps: int, seed: int) -> List[int]:
    """Sizes drifting from ``lo`` towards ``hi`` with a seeded random walk on top."""
    rng = np.random.default_rng(seed + 7919)
    base = np.linspace(lo, hi, steps)
    jitter = rng.uniform(0.8, 1.2, steps)
    return [max(lo // 2, int(b * j)) for b, j in zip(base, jitter)]


# --------------------------------------------------------------- scikit-learn

def sk_forest(n: int, seed: int) -> List[Any]:
    """Random forest fitted with two joblib threads (multi-threaded, many
    mid-size index and impurity arrays per tree)."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    X, y = make_classification(n_samples=n, n_features=30, n_informative=12,
                               n_classes=3, random_state=seed)
    split = n * 3 // 4
    clf = RandomForestClassifier(n_estimators=40, max_depth=12, n_jobs=2,
                                 random_state=seed).fit(X[:split], y[:split])
    return [clf.predict_proba(X[split:]), clf.feature_importances_]


def sk_hgb(n: int, seed: int) -> List[Any]:
    """Histogram gradient boosting: small per-iteration histograms and
    gradients over a long-lived binned matrix."""
    from sklearn.datasets import make_regression
    from sklearn.ensemble import HistGradientBoostingRegressor
    X, y = make_regression(n_samples=n, n_features=20, noise=0.5, random_state=seed)
    split = n * 3 // 4
    reg = HistGradientBoostingRegressor(max_iter=60, random_state=seed,
                                        early_stopping=False).fit(X[:split], y[:split])
    return [reg.predict(X[split:])]


def sk_linear(n: int, seed: int) -> List[Any]:
    """Scaling, PCA, a Ridge alpha grid, logistic regression and k-means on
    one dataset: many mid-size temporaries of the same few shapes."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 50)) @ rng.standard_normal((50, 50))
    y = X[:, :5].sum(axis=1) + rng.standard_normal(n)
    Xs = StandardScaler().fit_transform(X)
    Z = PCA(n_components=20, random_state=seed).fit_transform(Xs)
    out: List[Any] = [Z[:100]]
    for alpha in (0.01, 0.1, 1.0, 10.0, 100.0):
        out.append(Ridge(alpha=alpha).fit(Xs, y).coef_)
    out.append(LogisticRegression(max_iter=300).fit(Z, y > np.median(y)).coef_)
    km = KMeans(n_clusters=8, n_init=3, random_state=seed).fit(Z)
    out.append(np.bincount(km.labels_, minlength=8))
    return out


# --------------------------------------------------------------------- pandas

def _frame(rng, rows: int):
    import pandas as pd
    return pd.DataFrame({
        "key": rng.integers(0, rows // 50 + 1, rows),
        "cat": pd.Categorical.from_codes(rng.integers(0, 12, rows),
                                         [f"c{i}" for i in range(12)]),
        "a": rng.standard_normal(rows),
        "b": rng.exponential(2.0, rows),
        "t": rng.integers(0, 1000, rows),
    })


def pd_groupby(n: int, seed: int) -> List[Any]:
    """Group-by aggregations and transforms on frames of drifting length."""
    rng = np.random.default_rng(seed)
    out: List[Any] = []
    for rows in _drift(n // 4, n, 10, seed):
        df = _frame(rng, rows)
        agg = df.groupby("key").agg(a_mean=("a", "mean"), b_sum=("b", "sum"),
                                    a_std=("a", "std"), t_max=("t", "max"))
        df["a_dm"] = df["a"] - df.groupby("cat", observed=True)["a"].transform("mean")
        by_cat = df.groupby(["cat", df["t"] // 100], observed=True)["a_dm"].sum()
        out += [agg.to_numpy(), by_cat.to_numpy()]
    return out


def pd_merge(n: int, seed: int) -> List[Any]:
    """Merge, sort, pivot and de-duplicate: large short-lived columns next
    to a long-lived fact table."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    facts = _frame(rng, n)
    out: List[Any] = []
    for rows in _drift(n // 8, n // 2, 6, seed):
        dim = pd.DataFrame({"key": rng.integers(0, n // 50 + 1, rows),
                            "w": rng.uniform(0, 1, rows)}).drop_duplicates("key")
        m = facts.merge(dim, on="key", how="inner")
        m = m.sort_values(["cat", "t", "a"], kind="stable")
        pv = m.pivot_table(index="cat", columns=m["t"] // 250, values="w",
                           aggfunc="sum", observed=True)
        out += [pv.to_numpy(), m["a"].to_numpy()[:: max(1, len(m) // 500)], len(m)]
    return out


# ---------------------------------------------------------------------- scipy

def sp_signal(n: int, seed: int) -> List[Any]:
    """FFT convolution, zero-phase filtering, resampling and Welch spectra
    on signals of drifting length."""
    from scipy import signal
    rng = np.random.default_rng(seed)
    sos = signal.butter(6, 0.1, output="sos")
    out: List[Any] = []
    for length in _drift(n // 4, n, 14, seed):
        x = rng.standard_normal(length)
        h = rng.standard_normal(length // 16 + 1)
        y = signal.fftconvolve(x, h, mode="same")
        z = signal.sosfiltfilt(sos, y)
        r = signal.resample_poly(z, 3, 2)
        f, p = signal.welch(r, nperseg=1024)
        out += [p, float(np.abs(z).sum())]
    return out


def sp_ndimage(n: int, seed: int) -> List[Any]:
    """Smoothing, edges, labelling and zoom on images of drifting size."""
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    out: List[Any] = []
    for side in _drift(n // 3, n, 10, seed):
        img = rng.standard_normal((side, side))
        g = ndimage.gaussian_filter(img, 3.0)
        edges = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        labels, count = ndimage.label(g > 0.05)
        sizes = ndimage.sum_labels(np.ones_like(g), labels, range(1, count + 1))
        small = ndimage.zoom(edges, 0.5, order=1)
        out += [count, np.sort(sizes)[-20:], small.sum(), ndimage.median_filter(small, 3)[::7, ::7]]
    return out


def sp_sparse(n: int, seed: int) -> List[Any]:
    """Sparse products, format conversions and direct solves of drifting size."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve
    rng = np.random.default_rng(seed)
    out: List[Any] = []
    for size in _drift(n // 3, n, 8, seed):
        A = sparse.random(size, size, density=8.0 / size, format="csr", random_state=rng)
        B = sparse.random(size, size // 2, density=8.0 / size, format="csc", random_state=rng)
        C = (A @ B).tocsr()
        G = (A.T @ A).tocsc()
        side = int(np.sqrt(size)) // 2
        lap1 = sparse.diags([np.full(side, 2.0), np.full(side - 1, -1.0),
                             np.full(side - 1, -1.0)], [0, -1, 1])
        K = (sparse.kronsum(lap1, lap1) + 0.1 * sparse.eye(side * side)).tocsc()
        x = spsolve(K, G[: side * side, :1].toarray().ravel() + 1.0)
        out += [C.nnz, float(abs(C).sum()), x[:: max(1, size // 200)]]
    return out


# ---------------------------------------------------------------------- numpy

def np_linalg_fft(n: int, seed: int) -> List[Any]:
    """solve/qr/svd/eigh and FFTs with drifting sizes, a cache of the last
    few factorizations kept alive (long-lived next to short-lived arrays)."""
    rng = np.random.default_rng(seed)
    cache: List[Any] = []
    out: List[Any] = []
    for size in _drift(n // 4, n, 12, seed):
        a = rng.standard_normal((size, size)) + size * np.eye(size)
        b = rng.standard_normal((size, 8))
        x = np.linalg.solve(a, b)
        q, r = np.linalg.qr(a)
        s = np.linalg.svd(a[:, : size // 2], compute_uv=False)
        w = np.linalg.eigvalsh(a + a.T)
        spec = np.fft.rfft(rng.standard_normal(size * 64 // 256 * 256))
        cache.append((q, r))
        if len(cache) > 3:
            cache.pop(0)
        out += [x, s[:10], w[-10:], np.abs(spec[:64])]
    out.append(sum(float(np.trace(r)) for _, r in cache))
    return out


def np_small(n: int, seed: int) -> List[Any]:
    """A per-sample Kalman filter with small arrays, keeping every tenth
    state: small-array-heavy code with a growing set of long-lived arrays."""
    rng = np.random.default_rng(seed)
    dim = 4
    F = np.eye(dim) + 0.01 * rng.standard_normal((dim, dim))
    H = rng.standard_normal((2, dim))
    Q, R = 0.01 * np.eye(dim), 0.1 * np.eye(2)
    xs = rng.standard_normal((n, 2))
    x, P = np.zeros(dim), np.eye(dim)
    kept: List[Any] = []
    for i in range(n):
        x = F @ x
        P = F @ P @ F.T + Q
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        x = x + K @ (xs[i] - H @ x)
        P = (np.eye(dim) - K @ H) @ P
        if i % 10 == 0:
            kept.append(np.concatenate([x, P.ravel()]))
    return [np.stack(kept), x, P]


def _thread_task(args: Tuple[int, int]) -> List[Any]:
    size, seed = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size)
    spec = np.fft.rfft(x)
    srt = np.sort(x)
    m = x[: (size // 64) * 64].reshape(-1, 64)
    gram = m.T @ m
    return [np.abs(spec[:32]), srt[:: max(1, size // 64)], np.linalg.eigvalsh(gram)[-4:]]


def np_threads(n: int, seed: int) -> List[Any]:
    """A two-thread pool over FFT, sort and matrix products of drifting size
    (numpy releases the GIL in all three: allocations from two threads)."""
    # multiples of 4096: FFT lengths with small factors, as real code pads them
    sizes = [max(4096, s // 4096 * 4096) for s in _drift(n // 4, n, 32, seed)]
    with ThreadPoolExecutor(max_workers=2) as ex:
        parts = list(ex.map(_thread_task, [(s, seed + i) for i, s in enumerate(sizes)]))
    return [a for part in parts for a in part]


# ------------------------------------------------- more of what users run most

def pd_strings(n: int, seed: int) -> List[Any]:
    """String (pyarrow-backed ``str``) key columns next to numeric ones on
    frames of drifting length: string methods, group-by on strings, a merge
    and value counts.  The strings live in Arrow's memory; the codes,
    indexers and numeric columns are numpy's."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    users = np.array([f"user_{i:06d}" for i in range(max(64, n // 30))], dtype=object)
    cities = np.array(["Lisbon", "Oslo", "Quito", "Lagos", "Osaka", "Perth", "Lima",
                       "Cairo", "Dakar", "Hanoi", "Minsk", "Tunis"], dtype=object)
    out: List[Any] = []
    for rows in _drift(n // 4, n, 8, seed):
        df = pd.DataFrame({
            "user": pd.array(users[rng.integers(0, len(users), rows)], dtype="str"),
            "city": pd.array(cities[rng.integers(0, len(cities), rows)], dtype="str"),
            "amount": rng.exponential(20.0, rows),
            "items": rng.integers(1, 9, rows),
        })
        df["tag"] = df["city"].str.slice(0, 3).str.upper() + "-" + df["user"].str.slice(-2)
        by_city = df.groupby("city").agg(total=("amount", "sum"), users=("user", "nunique"),
                                         items=("items", "mean"))
        lucky = df[df["user"].str.endswith("7")].groupby("user")["amount"].sum()
        m = df.merge(by_city[["total"]], left_on="city", right_index=True)
        share = (m["amount"] / m["total"]).to_numpy()
        counts = df["tag"].value_counts().sort_index()
        out += [by_city.to_numpy(), np.sort(lucky.to_numpy())[-20:],
                share[:: max(1, rows // 400)], counts.to_numpy()]
    return out


def pd_parquet(n: int, seed: int) -> List[Any]:
    """``to_parquet`` / ``read_parquet`` round trips (pyarrow engine, in
    memory) of frames of drifting length, with a column subset read back
    and aggregated: what loading and saving data between steps does."""
    import io

    import pandas as pd
    rng = np.random.default_rng(seed)
    out: List[Any] = []
    for rows in _drift(n // 4, n, 6, seed):
        df = _frame(rng, rows)
        df["label"] = pd.array(np.array(["lo", "mid", "hi"], dtype=object)[
            rng.integers(0, 3, rows)], dtype="str")
        buf = io.BytesIO()
        df.to_parquet(buf, engine="pyarrow", index=False)
        back = pd.read_parquet(io.BytesIO(buf.getvalue()), engine="pyarrow")
        part = pd.read_parquet(io.BytesIO(buf.getvalue()), engine="pyarrow",
                               columns=["key", "a", "b"])
        agg = back.groupby(["cat", "label"], observed=True)[["a", "b"]].mean()
        top = part.groupby("key")["b"].sum().nlargest(10)
        out += [agg.to_numpy(), top.to_numpy(), bool(back["t"].equals(df["t"]))]
    return out


def sk_pipeline(n: int, seed: int) -> List[Any]:
    """A preprocessing + model pipeline tuned by ``GridSearchCV(n_jobs=2)``
    on joblib's threading backend: two threads fitting pipelines at once."""
    from joblib import parallel_config
    from sklearn.datasets import make_classification
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = make_classification(n_samples=n, n_features=60, n_informative=20,
                               random_state=seed)
    pipe = make_pipeline(StandardScaler(), PCA(random_state=seed),
                         LogisticRegression(max_iter=300))
    grid = {"pca__n_components": [8, 16, 32], "logisticregression__C": [0.1, 1.0]}
    with parallel_config(backend="threading", n_jobs=2):
        gs = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    return [gs.cv_results_["mean_test_score"], gs.predict_proba(X[:500])]


def xr_reduce(n: int, seed: int) -> List[Any]:
    """xarray reductions on a (time, lat, lon) field of drifting length: a
    monthly climatology, anomalies, an area-weighted mean, a rolling mean
    and per-cell spread."""
    import pandas as pd
    import xarray as xr
    rng = np.random.default_rng(seed)
    lat = np.linspace(-60.0, 60.0, 30)
    lon = np.arange(0.0, 360.0, 6.0)
    out: List[Any] = []
    for days in _drift(n // 3, n, 6, seed):
        time = pd.date_range("2000-01-01", periods=days, freq="D")
        field = xr.DataArray(rng.standard_normal((days, lat.size, lon.size)),
                             dims=("time", "lat", "lon"),
                             coords={"time": time, "lat": lat, "lon": lon})
        clim = field.groupby("time.month").mean("time")
        anom = field.groupby("time.month") - clim
        series = anom.weighted(np.cos(np.deg2rad(field.lat))).mean(("lat", "lon"))
        smooth = series.rolling(time=30, center=True).mean()
        spread = anom.std("time")
        out += [clim.values, smooth.values[15:-15:30], spread.values,
                float(anom.max()), field.sel(lat=slice(-20, 20)).mean("lon").values[::50]]
    return out


def svc_requests(n: int, seed: int) -> List[Any]:
    """A long-running model service: ``n`` requests whose batch size drifts
    (a random walk over 1-2048 rows), each normalized, run through a
    two-layer network, soft-maxed and ranked; the last 64 responses kept
    in an LRU cache.  Its arrays' sizes never settle."""
    from collections import OrderedDict
    rng = np.random.default_rng(seed)
    d_in, d_hidden, d_out = 96, 192, 48
    w1 = rng.standard_normal((d_in, d_hidden)) / np.sqrt(d_in)
    w2 = rng.standard_normal((d_hidden, d_out)) / np.sqrt(d_hidden)
    mean, scale = rng.standard_normal(d_in), rng.uniform(0.5, 2.0, d_in)
    cache: "OrderedDict[int, Any]" = OrderedDict()
    totals = np.zeros(d_out)
    batch = 64.0
    for i in range(n):
        batch = float(np.clip(batch * rng.lognormal(0.0, 0.3), 1, 2048))
        x = rng.standard_normal((int(batch), d_in))
        h = np.maximum(((x - mean) / scale) @ w1, 0.0)
        logits = h @ w2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        cache[i] = (np.argsort(-p, axis=1)[:, :5], p.max(axis=1))
        if len(cache) > 64:
            cache.popitem(last=False)
        totals += p.sum(axis=0)
    return [totals, np.concatenate([top[:3].ravel() for top, _ in cache.values()])]


WORKLOADS: Dict[str, Workload] = {
    "sk_forest": Workload(sk_forest, 12000, 800, ("sklearn.ensemble", "sklearn.datasets"),
                          "multi-threaded (joblib threads), mid-size arrays"),
    "sk_hgb": Workload(sk_hgb, 80000, 4000, ("sklearn.ensemble", "sklearn.datasets"),
                       "small per-iteration arrays over a long-lived matrix"),
    "sk_linear": Workload(sk_linear, 40000, 4000,
                          ("sklearn.cluster", "sklearn.decomposition",
                           "sklearn.linear_model", "sklearn.preprocessing"),
                          "many mid-size arrays of a few shapes"),
    "pd_groupby": Workload(pd_groupby, 600000, 40000, ("pandas",),
                           "drifting sizes, group-by temporaries"),
    "pd_merge": Workload(pd_merge, 500000, 40000, ("pandas",),
                         "long-lived table, large short-lived columns"),
    "sp_signal": Workload(sp_signal, 600000, 100000, ("scipy.signal",),
                          "drifting sizes (signal lengths)"),
    "sp_ndimage": Workload(sp_ndimage, 1100, 300, ("scipy.ndimage",),
                           "drifting sizes (image sides), mid-size arrays"),
    "sp_sparse": Workload(sp_sparse, 60000, 10000, ("scipy.sparse", "scipy.sparse.linalg"),
                          "drifting sizes, index/value arrays"),
    "np_linalg_fft": Workload(np_linalg_fft, 1000, 160, (),
                              "drifting sizes, long- and short-lived arrays"),
    "np_small": Workload(np_small, 25000, 2000, (),
                         "small-array-heavy, growing long-lived set", corpus=2000),
    "np_threads": Workload(np_threads, 1000000, 100000, (),
                           "multi-threaded (ThreadPoolExecutor), drifting sizes"),
    "pd_strings": Workload(pd_strings, 400000, 30000, ("pandas", "pyarrow"),
                           "string (Arrow) columns, group-by/merge on strings"),
    "pd_parquet": Workload(pd_parquet, 400000, 30000, ("pandas", "pyarrow", "pyarrow.parquet"),
                           "Parquet round trips (pyarrow), drifting sizes"),
    "sk_pipeline": Workload(sk_pipeline, 40000, 2000,
                            ("sklearn.pipeline", "sklearn.model_selection",
                             "sklearn.decomposition", "sklearn.linear_model"),
                            "GridSearchCV n_jobs=2 (threads) over a pipeline"),
    "xr_reduce": Workload(xr_reduce, 1500, 200, ("xarray", "pandas"),
                          "xarray group-by/weighted/rolling reductions, drifting sizes"),
    "svc_requests": Workload(svc_requests, 3000, 300, (),
                             "long-running service loop, drifting batch sizes"),
}


def _canon(x: Any) -> bytes:
    """Bytes of one output for the digest.  Floats are quantized to 2**-20
    of the array's largest magnitude, so a difference in the last bits
    (summation order that depends on alignment) cannot flip the digest
    while any real corruption does."""
    if hasattr(x, "to_numpy"):
        x = x.to_numpy()
    if isinstance(x, (int, np.integer)):
        return b"i" + str(int(x)).encode()
    arr = np.asarray(x)
    if arr.dtype.kind in "fc":
        arr = np.nan_to_num(arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64))
        scale = float(np.abs(arr).max()) if arr.size else 0.0
        if scale > 0:
            q = 2.0 ** (np.floor(np.log2(scale)) - 20)
            arr = np.round(arr / q)
            if arr.dtype.kind == "c":
                arr = np.stack([arr.real, arr.imag])
            arr = arr.astype(np.int64)
    return str(arr.shape).encode() + arr.dtype.str.encode() + np.ascontiguousarray(arr).tobytes()


def digest(outputs: List[Any]) -> str:
    """SHA-256 (16 hex chars) of the workload's outputs, quantized as ``_canon`` says."""
    h = hashlib.sha256()
    for x in outputs:
        h.update(_canon(x))
    return h.hexdigest()[:16]


def run(name: str, n: Optional[int] = None, seed: int = 0) -> List[Any]:
    """Run one workload in this process (``n`` default: its full size)."""
    wl = WORKLOADS[name]
    return wl.fn(wl.full if n is None else n, seed)
