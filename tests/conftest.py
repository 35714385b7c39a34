"""Shared fixtures: a fresh pool per test, and health checks after each test.

Every Pool created during a test (directly or through default_pool()) is
recorded; after the test each one still open must pass ``pool.check() == 0``.
numpy's handler must also be back to the default: a test that leaves
mempool installed would silently change the tests after it.
"""
import functools
import gc
import os
import weakref

import pytest

import mempool
from numpy._core.multiarray import get_handler_name


# Under the ASan build (CI preloads libasan) the pool poisons free memory and
# every block's tail, so a test that writes there on purpose, to see the
# pool's own debug checks catch it, is stopped by ASan first: ASan is then
# the check, and those tests are skipped.
ASAN_PRELOADED = "asan" in os.environ.get("LD_PRELOAD", "")


def pytest_collection_modifyitems(config, items):
    if not ASAN_PRELOADED:
        return
    skip = pytest.mark.skip(reason="writes into poisoned pool memory on purpose: "
                                   "under ASan, ASan itself reports it")
    for item in items:
        if item.get_closest_marker("corrupts_memory"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _pool_health(monkeypatch):
    created = []
    original_init = mempool.Pool.__init__

    @functools.wraps(original_init)      # the signature stays Pool's
    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        created.append(weakref.ref(self))

    monkeypatch.setattr(mempool.Pool, "__init__", recording_init)
    yield created
    monkeypatch.undo()
    leaked_install = mempool.installed()
    if leaked_install is not None:
        mempool.uninstall()
    handler = get_handler_name()
    gc.collect()
    broken = []
    for ref in created:
        pool = ref()
        if pool is not None and not pool.closed:
            violations, named = pool.check_named()
            if violations:
                broken.append((pool, violations, named))
    assert leaked_install is None, "test left mempool installed"
    assert handler == "default_allocator", f"test left numpy's handler as {handler!r}"
    assert not broken, f"pool.check() found broken invariants: {broken}"


@pytest.fixture
def pool():
    """A fresh pool with default settings."""
    p = mempool.Pool()
    yield p
    gc.collect()


def live(pool):
    """Bytes live in ``pool`` now."""
    return pool.stats().live_bytes
