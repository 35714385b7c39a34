"""Fixtures for the pytest-benchmark suites: the allocator under test.

Every benchmark runs twice in the same session, once under numpy's default
handler and once inside ``with mempool.use(pool):``, grouped so that
pytest-benchmark prints the two side by side.  Page faults and RSS are
recorded beside the times in each benchmark's ``extra_info``, because a time
taken alone hides the cost the pool exists to remove.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def load_workloads():
    """The demo's workloads module, loaded by path so a broken or unbuilt
    ``mempool`` package does not stop the default-allocator benchmarks."""
    path = ROOT / "mempool" / "demo" / "workloads.py"
    spec = importlib.util.spec_from_file_location("_bench_workloads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mempool_or_reason():
    """(module, "") when mempool is importable and built, else (None, why)."""
    try:
        import mempool
        import mempool._core  # noqa: F401 - the extension must be built
    except Exception as exc:  # any failure to import means "not built"
        return None, f"mempool not built: {type(exc).__name__}: {exc}"
    return mempool, ""


def rss_bytes() -> int:
    """Current resident set size of this process (from /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE


@pytest.fixture(scope="session")
def workloads():
    """The shared deterministic workloads module."""
    return load_workloads()


@pytest.fixture(scope="session")
def pool():
    """mempool's default pool (skips the mempool rows when not built)."""
    mempool, why = _mempool_or_reason()
    if mempool is None:
        pytest.skip(why)
    return mempool.default_pool()


@pytest.fixture(params=["default", "mempool"])
def allocator(request) -> Iterator[Callable[[], contextlib.AbstractContextManager]]:
    """A factory of the context in which the benchmarked code runs.

    ``default`` is numpy's own handler; ``mempool`` routes every numpy
    allocation inside the context to the pool.
    """
    if request.param == "default":
        yield contextlib.nullcontext
        return
    mempool, why = _mempool_or_reason()
    if mempool is None:
        pytest.skip(why)
    the_pool = request.getfixturevalue("pool")
    yield lambda: mempool.use(the_pool)


@pytest.fixture
def measured(allocator, benchmark, request):
    """Run ``fn`` under the benchmark inside the allocator's context, then
    record page faults and RSS per call beside the timing."""

    def run(group: str, fn: Callable[[], object], extra_calls: int = 20):
        benchmark.group = group
        benchmark.extra_info["allocator"] = request.node.callspec.params["allocator"]
        with allocator():
            benchmark(fn)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(extra_calls):
                fn()
            after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        benchmark.extra_info["minflt_per_call"] = (after - before) / extra_calls
        benchmark.extra_info["rss_mb"] = rss_bytes() / 1e6

    return run
