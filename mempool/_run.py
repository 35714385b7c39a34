"""``python -m mempool run``: run a script, a module (``-m``) or a code string
(``-c``) with the pool installed, as ``python`` itself would run it, and
report the memory use at exit.

The argument list is split by hand, the way ``python`` does: run's own
options come first, then ``-m MODULE`` / ``-c CODE`` / ``SCRIPT``, and every
argument after that belongs to the program (``run -m pkg --help`` passes
``--help`` to pkg).
"""
from __future__ import annotations

import builtins
import os
import resource
import runpy
import sys
import types
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = ["RunTarget", "split_argv", "run_target"]

RunTarget = Tuple[str, str]   # ("script" | "module" | "code", value)

_USAGE = ("usage: python -m mempool run [--capacity BYTES] [--arrow] [--no-report] "
          "[--summary] [--history FILE] "
          "(SCRIPT | -m MODULE | -c CODE) [ARGS...]")


class RunUsageError(ValueError):
    """The ``run`` command line cannot be understood."""



def _process_snapshot() -> Dict[str, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snap = {"minflt": usage.ru_minflt, "majflt": usage.ru_majflt,
            # ru_maxrss is in KiB on Linux
            "maxrss": usage.ru_maxrss * 1024, "rss": 0}
    from mempool import _core
    snap["rss"] = _core.process_rss() or -1  # 0: /proc unreadable
    return snap


def format_report(stats, before: Dict[str, int], after: Dict[str, int],
                  script: str) -> str:
    """The text of the ``run`` report: pool figures from ``stats`` (a
    PoolStats) and process figures from two ``_process_snapshot`` dicts."""
    from mempool.errors import format_bytes as fb
    errors = {k: v for k, v in stats.errors.items() if v}
    rss = "n/a" if after["rss"] < 0 else fb(after["rss"])
    lines = [
        f"mempool report for {script}",
        f"  pool     peak live {fb(stats.peak_live_bytes)}, peak resident "
        f"{fb(stats.peak_resident_bytes)}, live now {fb(stats.live_bytes)}, "
        f"resident now {fb(stats.resident_bytes)}, reserved {fb(stats.reserved_bytes)}",
        f"  calls    alloc {stats.alloc_count}, calloc {stats.calloc_count}, "
        f"realloc {stats.realloc_count}, free {stats.free_count}",
        f"  os       mmap {stats.mmap_count}, munmap {stats.munmap_count}, "
        f"madvise {stats.madvise_count}, released {fb(stats.released_bytes)}",
        f"  process  peak RSS {fb(after['maxrss'])}, RSS now {rss}, page faults "
        f"{after['minflt'] - before['minflt']} minor / "
        f"{after['majflt'] - before['majflt']} major",
        "  errors   " + (", ".join(f"{k} {v}" for k, v in errors.items())
                         if errors else "none"),
    ]
    arrow = getattr(stats, "arrow", None)
    if arrow is not None:
        lines.insert(2, f"  arrow    peak {fb(arrow.max_memory)}, now {fb(arrow.bytes_allocated)}, "
                        f"{arrow.num_allocations} allocations, {arrow.frees} frees, "
                        f"refused {arrow.refused}, errors {arrow.errors}")
    return "\n".join(lines)


def split_argv(argv: Sequence[str]) -> Tuple[List[str], Optional[RunTarget], List[str]]:
    """``(run options, target, program args)`` from the words after ``run``.
    ``target`` is None when only run's options (or ``-h``) were given."""
    argv = list(argv)
    options: List[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            if i + 1 >= len(argv):
                raise RunUsageError(f"argument {word} needs a value\n{_USAGE}")
            kind = "module" if word == "-m" else "code"
            return options, (kind, argv[i + 1]), argv[i + 2:]
        if word.startswith("-m") or word.startswith("-c"):   # -mpkg, -c'code'
            kind = "module" if word[1] == "m" else "code"
            return options, (kind, word[2:]), argv[i + 1:]
        if word in ("--capacity", "--history"):
            options += argv[i:i + 2]
            i += 2
            continue
        if word.startswith("-") and word != "-":
            options.append(word)
            i += 1
            continue
        return options, ("script", word), argv[i + 1:]
    return options, None, []


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _execute(kind: str, target: str, args: Sequence[str]) -> None:
    if kind == "script":
        sys.argv = [target, *args]
        # as `python script.py` does: the script's directory comes first
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    elif kind == "module":
        sys.argv = [target, *args]          # run_module puts the file path in argv[0]
        sys.path.insert(0, os.getcwd())     # as `python -m`: the current directory
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        sys.path.insert(0, "")
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        saved_main = sys.modules.get("__main__")
        sys.modules["__main__"] = main
        try:
            exec(compile(target, "<string>", "exec"), main.__dict__)
        finally:
            if saved_main is not None:
                sys.modules["__main__"] = saved_main


def _module_exists(name: str) -> bool:
    import importlib.util
    sys.path.insert(0, os.getcwd())
    try:
        return bool(name) and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):   # a parent package missing, or "..x"
        return False
    finally:
        sys.path.pop(0)


def run_target(kind: str, target: str, args: Sequence[str], capacity: Optional[int] = None,
               report: bool = True, out: Optional[TextIO] = None, arrow: bool = False,
               summary: bool = False, history: Optional[str] = None) -> int:
    """Run a script path, module name or code string (``kind`` "script",
    "module" or "code") as ``__main__`` with a pool installed (``arrow``:
    Arrow's default pool too); return its exit status.  The report goes to
    ``out`` (default stderr) even when the program raises or calls
    sys.exit().  ``summary``: also print the pool's memory summary, in this
    process and in every child process the pool reaches
    (MEMPOOL_SHOW_STATS=1); ``history``: record the pool's history and write
    it as a snapshot to that file (children: FILE-<pid>)."""
    import mempool
    if kind == "script" and not os.path.isfile(target):
        print(f"mempool run: no such script: {target}", file=sys.stderr)
        return 2
    if history and not os.path.isdir(os.path.dirname(os.path.abspath(history))):
        print(f"mempool run: --history {history}: no such directory", file=sys.stderr)
        return 2
    if kind == "module" and not _module_exists(target):
        print(f"mempool run: no module named {target!r}", file=sys.stderr)
        return 1
    pool = mempool.default_pool() if capacity is None else mempool.Pool(capacity)
    label = {"script": target, "module": f"-m {target}", "code": "-c <code>"}[kind]
    before = _process_snapshot()
    saved_argv, saved_path = sys.argv, list(sys.path)
    from mempool import _exitreport
    if summary:
        os.environ[_exitreport.SHOW_STATS_VAR] = "1"
    if history:
        os.environ[_exitreport.HISTORY_VAR] = os.path.abspath(history)
        os.environ[_exitreport.HISTORY_OWNER_VAR] = str(os.getpid())
    mempool.install(pool, arrow=arrow)   # arms the summary and the history (_exitreport)
    status = 0
    try:
        _execute(kind, target, args)
    except SystemExit as exc:
        status = _exit_status(exc)
    finally:
        if summary or history:
            _exitreport.report(out)   # labelled with the program's argv
        mempool.uninstall()
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if report:
            print(format_report(pool.stats(), before, _process_snapshot(), label),
                  file=out if out is not None else sys.stderr)
    return status
