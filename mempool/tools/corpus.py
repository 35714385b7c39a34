"""Where the trace corpus is: ``benches/traces/`` of a source checkout.

The corpus (the demo's traces ``mlp`` and ``temporaries``, and the
real-library tuning corpus in ``real/``) is data for the tools, the tests and
the benches, not part of the allocator: the wheel does not ship it.  From a
source checkout (the README's ``pip install -e '.[test]'``) the tools find it
beside the package; installed from a wheel they say so and what to do,
and every tool still takes trace files by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

__all__ = ["TRACE_DIR", "REAL_DIR", "CorpusMissing", "trace_dir", "names"]

#: The corpus in a source checkout (mempool/tools/corpus.py -> the repository).
TRACE_DIR = Path(__file__).resolve().parents[2] / "benches" / "traces"
#: The real-library tuning corpus (``python -m mempool bench --real --record-corpus``).
REAL_DIR = TRACE_DIR / "real"

HOW = ("the trace corpus (benches/traces/ of a source checkout) is not installed with the "
       "package: clone mempool and pip install -e '.[test]' there, or name trace files by path")


class CorpusMissing(FileNotFoundError):
    """The trace corpus is not there: mempool runs from a wheel, not a checkout."""


def trace_dir(real: bool = False) -> Path:
    """The corpus folder (``real/`` with ``real=True``); CorpusMissing,
    saying what to do, when mempool is not run from a source checkout."""
    path = REAL_DIR if real else TRACE_DIR
    if not path.is_dir():
        raise CorpusMissing(HOW)
    return path


def names(real: bool = False) -> List[str]:
    """Names of the corpus's traces (``mlp``...), [] when it is missing."""
    path = REAL_DIR if real else TRACE_DIR
    return sorted(p.stem for p in path.glob("*.trace")) if path.is_dir() else []
