"""pyarrow's own memory-pool and pandas-conversion tests (pyarrow/tests/
test_memory.py, test_pandas.py, shipped in pyarrow's wheel) with mempool
as Arrow's default pool: the start-up install (MEMPOOL_INSTALL=1
MEMPOOL_ARROW=1) in a fresh interpreter running pytest --pyargs, which then
checks that the pool really served Arrow (and caught no bad pointer).

Deselected, because they assert what mempool changes on purpose, each a
check that Arrow's default pool *is one of Arrow's own allocators*:
- test_default_backend_name, test_memory_pool_factories: pyarrow's default
  (and the backend object the redirect takes over, ``pa.mimalloc_memory_pool()``
  by default) must be named "system", "jemalloc" or "mimalloc"; it is
  "mempool" (``pyarrow.set_memory_pool`` alone already makes it so);
- test_env_var and test_debug_memory_pool_{abort,trap,warn} on the default
  backend: subprocesses, which inherit MEMPOOL_ARROW=1, that check Arrow's
  ARROW_DEFAULT_MEMORY_POOL choice and Arrow's own debug allocator's
  messages.  (mempool's debug mode catches the same overrun with its own
  words: tests/test_arrow.py::test_debug_mode_reports_arrow_overruns.)
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

from arrow_helpers import TIMEOUT, _env  # noqa: E402


def _native_backend():
    code = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, check=True, timeout=TIMEOUT).stdout.strip()


RUNNER = """
import json, sys
import pytest
rc = pytest.main(sys.argv[1:])
import mempool, pyarrow as pa
pool = mempool.installed()
share = pool.stats().arrow
print(json.dumps({"rc": int(rc), "backend": pa.default_memory_pool().backend_name,
                  "arrow_allocations": share.num_allocations, "arrow_errors": share.errors,
                  "core_errors": pool.stats().error_total}))
"""


@pytest.mark.slow
def test_pyarrow_memory_and_pandas_tests_pass_with_the_pool_as_default(tmp_path):
    backend = _native_backend()
    deselect = ("test_default_backend_name or test_memory_pool_factories or test_env_var"
                f" or ((test_debug_memory_pool_abort or test_debug_memory_pool_trap"
                f" or test_debug_memory_pool_warn) and (default_memory_pool or {backend}_memory_pool))")
    args = ["-q", "-p", "no:cacheprovider", "--pyargs", "pyarrow.tests.test_memory",
            "pyarrow.tests.test_pandas", "-k", f"not ({deselect})", "-W", "ignore"]
    proc = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=tmp_path,
                          env=_env(MEMPOOL_INSTALL="1", MEMPOOL_ARROW="1"),
                          capture_output=True, text=True, timeout=TIMEOUT)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    result = json.loads(lines[-1])
    summary = next((l for l in reversed(lines) if " passed" in l), "")
    print(summary)
    assert result["rc"] == 0, "\n".join(lines[-40:]) + proc.stderr[-3000:]
    assert result["backend"] == "mempool"
    assert result["arrow_allocations"] > 1000, result   # the pool served the suite
    assert result["arrow_errors"] == 0 and result["core_errors"] == 0, result
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed > 400, summary
