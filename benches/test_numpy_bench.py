"""numpy allocation benchmarks: default handler vs ``mempool.use(pool)``.

Run with ``pytest benches/test_numpy_bench.py --benchmark-only`` (or through
``python -m mempool bench``).  Each case runs under both allocators in the
same session and shares a benchmark group, so their times compare directly.
Sizes are fixed or drawn from seeded generators: every run does the same work.
"""

from __future__ import annotations

import numpy as np
import pytest

KIB, MIB = 1 << 10, 1 << 20
_rng = np.random.default_rng(7)
#: Element counts for the drifting cases, seeded and fixed for the session.
SMALL_DRIFT = _rng.integers(1, 65, size=256).tolist()
MEDIUM_DRIFT = _rng.integers(1 * KIB // 8, 256 * KIB // 8 + 1, size=64).tolist()
LARGE_DRIFT = _rng.integers(1 * MIB // 8, 64 * MIB // 8 + 1, size=16).tolist()


@pytest.mark.parametrize("kind", ["empty", "zeros"])
@pytest.mark.parametrize("label,count", [("small-64B", 8), ("medium-64KiB", 8 * KIB),
                                         ("large-16MiB", 2 * MIB)])
def test_fixed_size(measured, kind, label, count):
    """Allocate and drop one array of a fixed size."""
    make = getattr(np, kind)
    measured(f"{kind}-{label}", lambda: make(count))


@pytest.mark.parametrize("nbytes", [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                    16384, 32768])
def test_small_sizes(measured, nbytes):
    """``np.empty`` of one size (float64) + drop: the per-size table of the
    small-block path against numpy's own cache (below 1 KiB) and malloc."""
    count = nbytes // 8
    empty = np.empty
    measured(f"empty-{nbytes}B", lambda: empty(count))


def test_small_drift(measured):
    """256 ``np.empty`` calls of 1-64 elements, each dropped at once."""
    empty = np.empty

    def run():
        for k in SMALL_DRIFT:
            empty(k)

    measured("empty-small-drift-x256", run)


def test_medium_drift(measured):
    """64 ``np.ones`` of 1-256 KiB (touched, so pages are really used)."""
    ones = np.ones

    def run():
        for k in MEDIUM_DRIFT:
            ones(k)

    measured("ones-medium-drift-x64", run)


def test_large_temporaries_drift(measured):
    """``a[:n] * b[:n] + 1.0`` for 16 seeded n of 1-64 MiB (fresh temporaries)."""
    a = np.random.default_rng(1).random(64 * MIB // 8)
    b = np.random.default_rng(2).random(64 * MIB // 8)

    def run():
        for n in LARGE_DRIFT:
            a[:n] * b[:n] + 1.0

    measured("temporaries-1-64MiB-x16", run)


def test_mlp_step(measured, workloads):
    """One MLP 784-1024-1024-10 training step, batch size drifting 32-512."""
    mlp = workloads.MLP(64, seed=0)
    state = {"i": 0}

    def run():
        mlp.step(state["i"] % mlp.steps)
        state["i"] += 1

    measured("mlp-step-drifting-batch", run, extra_calls=10)
