"""What a process tells at exit about the pool it installed: the memory
summary (``MEMPOOL_SHOW_STATS=1``, ``python -m mempool run --summary``) and
its history as a snapshot file (``MEMPOOL_HISTORY=FILE``, ``run --history
FILE``), like ``MIMALLOC_SHOW_STATS``.

:func:`arm` is called by :func:`mempool.install` (and so by the start-up
install of ``MEMPOOL_INSTALL=1`` in every child process the variables reach).
Each process reports once, labelled with its pid and argv: at interpreter
exit, and in a ``multiprocessing`` child forked from an armed process (which
leaves through ``os._exit``, skipping ``atexit``) through multiprocessing's
own exit finalizers.  The process that set ``MEMPOOL_HISTORY`` writes FILE;
every other process writes FILE with ``-<pid>`` before its suffix.
"""
from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any, Optional

from mempool import _settings

SHOW_STATS_VAR = _settings.OPTIONS["show_stats"].env         # MEMPOOL_SHOW_STATS
HISTORY_VAR = _settings.OPTIONS["history"].env               # MEMPOOL_HISTORY
HISTORY_OWNER_VAR = _settings.OPTIONS["history_pid"].env     # the pid that writes FILE itself

_pool: Any = None
_armed_pid: Optional[int] = None
_done_pid: Optional[int] = None
_fork_hook = False


def show_stats() -> bool:
    """Whether MEMPOOL_SHOW_STATS (or run --summary) asks for the summary at
    exit (a ValueError naming the variable when it is malformed)."""
    return bool(_settings.option_value("show_stats"))


def history_path() -> Optional[Path]:
    """Where this process writes its history at exit (None: nowhere)."""
    text = (_settings.option_value("history") or "").strip()
    if not text:
        return None
    path = Path(text)
    if (_settings.option_value("history_pid") or "").strip() == str(os.getpid()):
        return path
    suffix = "".join(path.suffixes)
    stem = path.name[:-len(suffix)] if suffix else path.name
    return path.with_name(f"{stem}-{os.getpid()}{suffix}")


def label() -> str:
    """``pid N: argv`` of this process."""
    argv = " ".join(sys.argv) if sys.argv and sys.argv != [""] else sys.executable
    return f"pid {os.getpid()}: {argv}"


def arm(pool: Any) -> None:
    """Report on ``pool`` at this process's exit when the environment asks
    for it (and start recording its history for MEMPOOL_HISTORY)."""
    global _pool, _armed_pid, _fork_hook
    if not (show_stats() or history_path()):
        return
    _pool = pool
    if history_path() is not None:
        from mempool import _core
        from mempool.snapshot import DEFAULT_MAX_ENTRIES, DEFAULT_STACKS
        if not _core._history_recording(pool):
            _core._history_start(pool, DEFAULT_MAX_ENTRIES, DEFAULT_STACKS)
    if _armed_pid != os.getpid():
        _armed_pid = os.getpid()
        atexit.register(report)
    if not _fork_hook:
        _fork_hook = True
        # A multiprocessing child forked from here leaves through os._exit,
        # past atexit; it runs multiprocessing's exit finalizers, but only
        # those registered after its bootstrap cleared the inherited ones.
        from multiprocessing import util
        util.register_after_fork(_SENTINEL, _after_fork)


class _Sentinel:
    """The object multiprocessing's after-fork registry keys the hook on."""


_SENTINEL = _Sentinel()


def _after_fork(_: Any) -> None:
    from multiprocessing import util
    util.Finalize(None, report, exitpriority=0)


def report(out: Any = None) -> None:
    """Print the summary and write the history now (once per process)."""
    global _done_pid
    if _pool is None or _done_pid == os.getpid():
        return
    _done_pid = os.getpid()
    out = out if out is not None else sys.stderr
    text = []
    try:
        if _pool.closed:
            return
        path = history_path()
        if path is not None:
            snap = _pool.snapshot()
            snap.dump(path)
            text.append(f"mempool: history of {label()} written to {path} "
                        f"({snap.history['events']['count'] if snap.history else 0} events)")
        if show_stats():
            text.append(_pool.stats().memory_summary(f"mempool memory summary, {label()}"))
    except Exception as exc:  # a report must never turn a clean exit into a crash
        text.append(f"mempool: no exit report for {label()}: {exc!r}")
    # one write: children reporting at once do not interleave their lines
    out.write("\n".join(text) + "\n")
    out.flush()
