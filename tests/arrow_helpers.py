"""Helpers of the Arrow tests: a fresh interpreter with a clean MEMPOOL_*
environment (the Arrow default pool changes last as long as a process)."""
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIMEOUT = 600   # the first test may build the adapter (~1 min on a busy machine)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPOOL_")
           or k in ("MEMPOOL_ARROW_CACHE", "MEMPOOL_SANITIZE")}
    env.pop("ARROW_DEFAULT_MEMORY_POOL", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_py(code, *, env=None, args=(), check=True):
    """Run ``code`` in a fresh interpreter; return the CompletedProcess."""
    proc = subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)],
                          env=env or _env(), capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])
