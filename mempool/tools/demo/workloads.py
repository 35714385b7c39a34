"""Deterministic numpy workloads for the demo, the benchmarks and the tests.

Each workload is plain numpy code with no knowledge of any allocator: the
demo runs the very same code under numpy's default handler, under preloaded
allocators and inside ``with mempool.use(pool):``.  Every random choice comes
from a seeded generator, so two runs with the same seed perform the same
allocations in the same order and return the same values, whatever allocator
serves them.  That is what lets the demo check the MLP's loss curve for
bit-identity across allocators.

This module imports nothing from ``mempool``: the demo's child process loads
it by file path, so that the rows for other allocators never load the pool.
"""

from __future__ import annotations

import abc
import hashlib
import math
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

MIB = 1 << 20

#: Batch sizes the MLP draws from by default (inclusive bounds).
DEFAULT_BATCH_RANGE: Tuple[int, int] = (32, 512)
#: Sizes, in MiB, of the temporaries workload's results (inclusive bounds).
DEFAULT_TEMP_RANGE_MIB: Tuple[int, int] = (1, 64)


class Workload(abc.ABC):
    """Base class: a loop body called once per step, plus what the report needs.

    Subclasses build all their inputs in ``__init__`` (from the seed only) and
    do one step's worth of allocation-heavy work in :meth:`step`.
    """

    #: Short name used on the command line and in the JSON.
    name = "workload"
    #: One line for the report.
    description = ""
    #: Operations per step; the report divides step times by this.
    ops_per_step = 1
    #: Unit the report uses for the per-operation time ("ms" or "ns").
    time_unit = "ms"
    #: True when the per-step values must be bit-identical across allocators.
    values_must_match = True
    #: True when the workload has a "floor" variant (``floor=True``): the same
    #: arithmetic, bit for bit, into arrays allocated and touched once before
    #: the loop.  No allocator can beat it, since it allocates nothing large.
    has_floor = False
    #: False when the workload makes no BLAS call: the demo then runs it with
    #: one BLAS thread, since OpenBLAS's idle workers spin for a while after
    #: numpy's import and would steal a core from a short loop.
    uses_blas = False

    def __init__(self, steps: int, seed: int) -> None:
        self.steps = int(steps)
        self.seed = int(seed)
        self.floor = False

    @abc.abstractmethod
    def step(self, i: int) -> float:
        """Run step ``i`` and return a value that depends on its results."""

    def close(self) -> None:
        """Drop every array the workload holds, so their memory can be freed."""
        self.__dict__.clear()

    def live_estimate_bytes(self) -> int:
        """Analytic estimate of the peak bytes of live numpy data.

        Used only when no pool measured the true figure in the same run.
        """
        return 0

    def describe(self) -> Dict[str, object]:
        """Parameters of this instance, for the JSON report."""
        return {"name": self.name, "steps": self.steps, "seed": self.seed,
                "description": self.description}


class MLP(Workload):
    """MLP 784-1024-1024-10 in float32 trained with SGD on synthetic data.

    The batch size drifts every step (seeded, uniform in ``batch_range``), so
    every activation, gradient and temporary changes size from one step to
    the next.  With glibc this makes the top of the heap shrink (trim) and
    grow (re-fault) every step.  The loss is a softmax cross-entropy; the
    step returns it as a Python float.
    """

    name = "mlp"
    description = "MLP 784-1024-1024-10 float32, fwd+bwd+SGD, batch drifting"
    sizes = (784, 1024, 1024, 10)
    has_floor = True
    uses_blas = True

    def __init__(self, steps: int, seed: int,
                 batch_range: Tuple[int, int] = DEFAULT_BATCH_RANGE,
                 dataset_rows: int = 8192, lr: float = 0.01,
                 floor: bool = False) -> None:
        super().__init__(steps, seed)
        lo, hi = int(batch_range[0]), int(batch_range[1])
        if not 1 <= lo <= hi:
            raise ValueError(f"bad batch range {batch_range!r}")
        self.batch_range = (lo, hi)
        self.dataset_rows = int(dataset_rows)
        rng = np.random.default_rng(seed)
        self.batches = rng.integers(lo, hi + 1, size=self.steps).tolist()
        d_in, h1, h2, d_out = self.sizes
        self.X = rng.standard_normal((self.dataset_rows, d_in), dtype=np.float32)
        # Labels from a random linear teacher, so the loss actually falls.
        teacher = rng.standard_normal((d_in, d_out), dtype=np.float32)
        self.Y = np.argmax(self.X @ teacher, axis=1)
        self.params: List[np.ndarray] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
            w *= np.float32(math.sqrt(2.0 / fan_in))  # He initialisation
            self.params += [w, np.zeros(fan_out, dtype=np.float32)]
        self.lr = np.float32(lr)
        self.floor = bool(floor)
        if self.floor:
            self._make_floor_buffers()

    def _make_floor_buffers(self) -> None:
        """Every batch-sized or weight-sized array of a step, at the largest
        batch, allocated and written once (np.ones touches every page)."""
        d_in, h1, h2, _ = self.sizes
        hi = self.batch_range[1]
        f32 = np.float32
        self.bufs = {
            "x": np.ones((hi, d_in), f32),
            **{k: np.ones((hi, h1), f32) for k in ("z1", "a1", "d1")},
            **{k: np.ones((hi, h2), f32) for k in ("z2", "a2", "d2")},
            "m1": np.ones((hi, h1), bool), "m2": np.ones((hi, h2), bool),
            "dw1": np.ones((d_in, h1), f32), "dw2": np.ones((h1, h2), f32),
            "upd": np.ones(max(p.size for p in self.params), f32),
        }

    def _batch_rows(self, i: int) -> np.ndarray:
        """The dataset rows of step ``i``'s batch (seeded by the step)."""
        return np.random.default_rng([self.seed, i]).integers(
            0, self.dataset_rows, size=self.batches[i])

    def _head(self, a2: np.ndarray, y: np.ndarray):
        """Output layer, softmax cross-entropy loss and its gradient: the
        loss, the logits' gradient and the last layer's weight and bias
        gradients.  Its arrays are batch x 10: small in every variant."""
        w3, b3 = self.params[4], self.params[5]
        b = a2.shape[0]
        logits = a2 @ w3 + b3
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        denom = e.sum(axis=1, keepdims=True)
        rows = np.arange(b)
        loss = float(np.mean(np.log(denom[:, 0]) - logits[rows, y]))
        g = e / denom
        g[rows, y] -= 1.0
        g /= np.float32(b)
        return loss, g, a2.T @ g, g.sum(axis=0)

    def step(self, i: int) -> float:
        """One SGD step on a freshly gathered batch; returns the loss."""
        if self.floor:
            return self._step_floor(i)
        idx = self._batch_rows(i)
        # A data loader hands out a new batch array each step: gather rows.
        x = self.X.take(idx, axis=0)
        y = self.Y.take(idx)
        w1, b1, w2, b2, w3, b3 = self.params
        z1 = x @ w1 + b1
        a1 = np.maximum(z1, 0)
        z2 = a1 @ w2 + b2
        a2 = np.maximum(z2, 0)
        loss, g, dw3, db3 = self._head(a2, y)
        # Backward pass through the hidden layers.
        d2 = (g @ w3.T) * (z2 > 0)
        dw2 = a1.T @ d2
        db2 = d2.sum(axis=0)
        d1 = (d2 @ w2.T) * (z1 > 0)
        dw1 = x.T @ d1
        db1 = d1.sum(axis=0)
        for p, grad in zip(self.params, (dw1, db1, dw2, db2, dw3, db3)):
            p -= self.lr * grad  # the product is a fresh temporary, as in user code
        return loss

    def _step_floor(self, i: int) -> float:
        """:meth:`step`, bit for bit, with every large array written into the
        buffers made before the loop (``out=``); only vectors of a few KiB
        (indices, labels, the 10-wide logits, biases) are still allocated.
        Each line computes exactly what its twin in :meth:`step` does: numpy
        evaluates ``x @ w1 + b1`` as the product, then the sum in place into
        that temporary, which is what ``matmul(out=)`` then ``+=`` does."""
        idx = self._batch_rows(i)
        f = {k: v[:idx.size] for k, v in self.bufs.items() if k not in ("dw1", "dw2", "upd")}
        x = np.take(self.X, idx, axis=0, out=f["x"])
        y = self.Y.take(idx)
        w1, b1, w2, b2, w3, b3 = self.params
        z1 = np.matmul(x, w1, out=f["z1"])
        z1 += b1
        a1 = np.maximum(z1, 0, out=f["a1"])
        z2 = np.matmul(a1, w2, out=f["z2"])
        z2 += b2
        a2 = np.maximum(z2, 0, out=f["a2"])
        loss, g, dw3, db3 = self._head(a2, y)
        d2 = np.matmul(g, w3.T, out=f["d2"])
        d2 *= np.greater(z2, 0, out=f["m2"])
        dw2 = np.matmul(a1.T, d2, out=self.bufs["dw2"])
        db2 = d2.sum(axis=0)
        d1 = np.matmul(d2, w2.T, out=f["d1"])
        d1 *= np.greater(z1, 0, out=f["m1"])
        dw1 = np.matmul(x.T, d1, out=self.bufs["dw1"])
        db1 = d1.sum(axis=0)
        upd = self.bufs["upd"]
        for p, grad in zip(self.params, (dw1, db1, dw2, db2, dw3, db3)):
            p -= np.multiply(self.lr, grad, out=upd[:grad.size].reshape(grad.shape))
        return loss

    def live_estimate_bytes(self) -> int:
        """Dataset + parameters + gradients + activations at the largest batch."""
        f4 = 4
        d_in, h1, h2, d_out = self.sizes
        hi = self.batch_range[1]
        dataset = self.X.nbytes + self.Y.nbytes
        params = sum(p.nbytes for p in self.params)
        # z1, a1, z2, a2, d1, d2 and their masks/temporaries at the top batch.
        acts = hi * (d_in + 4 * h1 + 4 * h2 + 4 * d_out) * f4
        return dataset + 2 * params + acts

    def describe(self) -> Dict[str, object]:
        """Parameters of this instance, for the JSON report."""
        out = super().describe()
        out.update(batch_range=list(self.batch_range),
                   dataset_rows=self.dataset_rows, layer_sizes=list(self.sizes))
        return out


class Temporaries(Workload):
    """Inference-style arithmetic creating large temporaries of drifting size.

    Two float64 inputs of the largest size are built once; each step computes
    ``c = a[:n] * b[:n] + 1.0`` for a seeded ``n`` whose result is 1-64 MiB.
    numpy elides the ``+ 1.0`` temporary (in-place add), so each step makes
    one fresh allocation, and the previous result stays alive until the new
    one is assigned, as a pipeline holding its last output would.
    """

    name = "temporaries"
    description = "c = a[:n] * b[:n] + 1.0, result size drifting 1-64 MiB"

    has_floor = True

    def __init__(self, steps: int, seed: int,
                 size_range_mib: Tuple[int, int] = DEFAULT_TEMP_RANGE_MIB,
                 floor: bool = False) -> None:
        super().__init__(steps, seed)
        lo, hi = int(size_range_mib[0]), int(size_range_mib[1])
        if not 1 <= lo <= hi:
            raise ValueError(f"bad size range {size_range_mib!r}")
        self.size_range_mib = (lo, hi)
        rng = np.random.default_rng(seed)
        n_max = hi * MIB // 8
        self.a = rng.random(n_max)
        self.b = rng.random(n_max)
        self.lengths = rng.integers(lo * MIB // 8, n_max + 1,
                                    size=self.steps).tolist()
        self.c = None
        self.floor = bool(floor)
        if self.floor:
            # Two results are alive at once (the last one and the new one).
            self.bufs = [np.ones(n_max), np.ones(n_max)]

    def step(self, i: int) -> float:
        """Compute one drifting-size result; returns its middle element."""
        n = self.lengths[i]
        if self.floor:
            # The floor: the same arithmetic into pre-touched buffers.
            out = np.multiply(self.a[:n], self.b[:n], out=self.bufs[i & 1][:n])
            out += 1.0
            self.c = out
        else:
            self.c = self.a[:n] * self.b[:n] + 1.0
        return float(self.c[n // 2])

    def mean_result_mib(self) -> float:
        """Mean size of the per-step result, in MiB (for the report)."""
        return 8.0 * sum(self.lengths) / max(1, len(self.lengths)) / MIB

    def live_estimate_bytes(self) -> int:
        """Both inputs plus the two largest results alive at once."""
        top = sorted(self.lengths)[-2:]
        return self.a.nbytes + self.b.nbytes + 8 * sum(top)

    def describe(self) -> Dict[str, object]:
        """Parameters of this instance, for the JSON report."""
        out = super().describe()
        out.update(size_range_mib=list(self.size_range_mib),
                   mean_result_mib=round(self.mean_result_mib(), 2))
        return out


#: Byte sizes of the small workload's per-size table (float64 arrays).
SIZE_TABLE_BYTES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class Small(Workload):
    """``np.empty`` of 1-64 float64 elements, dropped at once, many per step.

    Measures the cost of one small allocate/free pair through the handler
    (numpy's own small-block cache only fronts its default handler).
    """

    name = "small"
    description = "np.empty(k) + drop, k = 1-64 elements"
    time_unit = "ns"
    ops_per_step = 20000

    def __init__(self, steps: int, seed: int, ops_per_step: int = 20000) -> None:
        super().__init__(steps, seed)
        self.ops_per_step = int(ops_per_step)
        rng = np.random.default_rng(seed)
        self.counts = rng.integers(1, 65, size=self.ops_per_step).tolist()

    def step(self, i: int) -> float:
        """Allocate and drop ``ops_per_step`` small arrays; returns a checksum."""
        empty = np.empty
        for k in self.counts:
            empty(k)
        return float(sum(self.counts) + i)

    def live_estimate_bytes(self) -> int:
        """At most one small array is alive at a time."""
        return 64 * 8

    def size_table(self, sizes: Sequence[int] = SIZE_TABLE_BYTES, reps: int = 7,
                   ops: int = 4000) -> Dict[str, float]:
        """ns per ``np.empty(n // 8)`` + drop for each byte size ``n``: the
        median of ``reps`` timed batches of ``ops`` calls, the sizes taken in
        turn within each repetition so that a load change hits them all."""
        empty = np.empty
        perf = time.perf_counter_ns
        samples: Dict[int, List[float]] = {n: [] for n in sizes}
        for _ in range(reps):
            for n in sizes:
                k = max(1, n // 8)
                loop = range(ops)
                t0 = perf()
                for _ in loop:
                    empty(k)
                samples[n].append((perf() - t0) / ops)
        return {str(n): statistics.median(v) for n, v in samples.items()}


#: Registry: name -> (class, default steps, quick steps, warm-up steps).
WORKLOADS: Dict[str, Tuple[Callable[..., Workload], int, int, int]] = {
    "mlp": (MLP, 120, 14, 10),
    "temporaries": (Temporaries, 150, 16, 10),
    "small": (Small, 40, 8, 3),
}


def make(name: str, steps: int, seed: int = 0,
         batch_range: Tuple[int, int] = DEFAULT_BATCH_RANGE,
         floor: bool = False) -> Workload:
    """Build the workload called ``name`` for ``steps`` steps (its floor
    variant when ``floor``: see :attr:`Workload.has_floor`)."""
    try:
        cls = WORKLOADS[name][0]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; "
                         f"choose from {', '.join(WORKLOADS)}") from None
    if floor and not cls.has_floor:
        raise ValueError(f"workload {name!r} has no floor variant")
    kwargs = {"floor": True} if floor else {}
    if cls is MLP:
        return MLP(steps, seed, batch_range=batch_range, **kwargs)
    return cls(steps, seed, **kwargs)


def digest(values: Sequence[float]) -> str:
    """SHA-256 of the exact float64 bit patterns of ``values`` (hex, 16 chars)."""
    raw = np.asarray(values, dtype=np.float64).tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def run(name: str, steps: int, seed: int = 0,
        batch_range: Tuple[int, int] = DEFAULT_BATCH_RANGE,
        floor: bool = False) -> List[float]:
    """Run a workload start to finish in this process; return its step values."""
    wl = make(name, steps, seed, batch_range, floor)
    try:
        return [wl.step(i) for i in range(steps)]
    finally:
        wl.close()
