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
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

__all__ = ["RunTarget", "split_argv", "run_target"]

RunTarget = Tuple[str, str]   # ("script" | "module" | "code", value)

_USAGE = "usage: python -m mempool run [SETTINGS] (SCRIPT | -m MODULE | -c CODE) [ARGS...]"


class UsageError(Exception):
    """A command line that cannot be understood: one line, exit status 2."""


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


def split_argv(argv: Sequence[str], parser: Any
               ) -> Tuple[List[str], Optional[RunTarget], List[str]]:
    """``(run options, target, program args)`` from the words after ``run``:
    run's options come first, then ``-m MODULE``, ``-c CODE`` or the script;
    every word after that is the program's.  ``target`` is None when only
    run's options (or ``-h``) were given.  An option run does not know is a
    UsageError naming the nearest one (``parser``: run's argparse parser,
    from mempool.cli, which says which options take a value)."""
    import difflib
    known = parser._option_string_actions          # flag -> argparse action
    argv = list(argv)
    options: List[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            if i + 1 >= len(argv):
                raise UsageError(f"mempool run: argument {word} needs a value ({_USAGE})")
            kind = "module" if word == "-m" else "code"
            return options, (kind, argv[i + 1]), argv[i + 2:]
        if word.startswith("-m") or word.startswith("-c"):   # -mpkg, -c'code'
            kind = "module" if word[1] == "m" else "code"
            return options, (kind, word[2:]), argv[i + 1:]
        if word.startswith("-") and word != "-":
            flag = word.split("=", 1)[0]
            if flag not in known:
                near = difflib.get_close_matches(flag, list(known), n=1)
                raise UsageError(f"mempool run: unknown option {flag}"
                                 + (f" (did you mean {near[0]}?)" if near else "")
                                 + " (see python -m mempool run --help)")
            takes_value = known[flag].nargs != 0 and "=" not in word
            options += argv[i:i + 2] if takes_value else [word]
            i += 2 if takes_value else 1
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
        if os.path.isfile(target) and not zipfile.is_zipfile(target):
            # as `python script.py` does: the script's directory comes first
            # (a directory or zip file run_path puts there itself)
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


def _target_error(kind: str, target: str) -> Optional[Tuple[str, int]]:
    """(message, exit status) when the target cannot be run, as python
    says it; None when it can."""
    if kind == "script":
        if os.path.isdir(target):
            if not os.path.isfile(os.path.join(target, "__main__.py")):
                return (f"mempool run: {target} is a directory without a __main__.py "
                        f"(python runs a directory through its __main__.py)", 2)
        elif not os.path.exists(target):
            return f"mempool run: no such file: {target}", 2
        elif not os.path.isfile(target):
            return f"mempool run: not a file: {target}", 2
    if kind == "module" and not _module_exists(target):
        return f"mempool run: no module named {target!r}", 1
    return None


# Frames of the machinery between `python -m mempool run` and the program.
_MACHINERY = {runpy.__file__, __file__, "<frozen runpy>"}


def _user_traceback(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """``tb`` without the frames of runpy and of run itself, so the program's
    error shows as plain python shows it."""
    cli = sys.modules.get("mempool.cli")
    machinery = _MACHINERY | {getattr(cli, "__file__", None)}
    while tb is not None and tb.tb_frame.f_code.co_filename in machinery:
        tb = tb.tb_next
    return tb


def _report_exception(exc: BaseException, pool: Any) -> int:
    """Print the program's uncaught exception as python would (through
    sys.excepthook, the program's own if it set one); return the exit
    status python would give."""
    if isinstance(exc, MemoryError):        # the pool's figures, when it refused
        refusal = pool._refusal(exc, detail="under python -m mempool run")
        if refusal is not None and hasattr(exc, "add_note"):
            exc.add_note(f"mempool: {refusal}")
    tb = _user_traceback(exc.__traceback__)
    try:
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    except Exception:                       # a broken hook: as python, the default
        sys.__excepthook__(type(exc), exc, tb)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def _make_pool(settings: Mapping[str, Any]) -> Any:
    """The pool run installs: ``MEMPOOL_*`` settings with run's flags over
    them (the start-up pool when MEMPOOL_INSTALL=1 made one and no flag
    changes it).  Made the default pool."""
    import mempool
    from mempool import _startup, dropin
    merged = {**_startup.settings_from_environ(), **settings}
    if not settings and mempool.installed() is not None:
        pool = mempool.installed()
    else:
        pool = mempool.Pool(**merged)
    dropin._set_default(pool)
    return pool


def _arrow(options: Mapping[str, Any]) -> bool:
    """Whether run puts Arrow's buffers in the pool too: --arrow (an error
    without pyarrow), else MEMPOOL_ARROW (ignored, with a line, without)."""
    from mempool import _startup
    if options.get("arrow") is None:
        return _startup.arrow_from_environ(warn_missing=True)
    if options["arrow"]:
        from mempool.arrow import ArrowAdapterError, require_pyarrow
        try:
            require_pyarrow()
        except ArrowAdapterError as exc:
            raise ValueError(f"--arrow: {exc}") from None
    return bool(options["arrow"])


def run_target(kind: str, target: str, args: Sequence[str],
               settings: Optional[Mapping[str, Any]] = None, report: bool = True,
               out: Optional[TextIO] = None, options: Optional[Mapping[str, Any]] = None) -> int:
    """Run a script path (or directory / zip with ``__main__.py``), module
    name or code string (``kind`` "script", "module" or "code") as
    ``__main__`` with a pool installed: the ``MEMPOOL_*`` settings with
    ``settings`` (Pool keyword arguments) over them.  ``options`` are the
    process options run's flags gave.  Returns the exit status python would
    give; the report goes to ``out`` (default stderr) even when the program
    raises or calls sys.exit().  An uncaught exception is printed as python
    prints it, without run's own frames.  A bad setting or target is one
    line on stderr and status 2."""
    import mempool
    from mempool import _settings
    problem = _target_error(kind, target)
    if problem is not None:
        print(problem[0], file=sys.stderr)
        return problem[1]
    try:
        pool = _make_pool(settings or {})
        arrow = _arrow(options or {})
    except (TypeError, ValueError) as exc:
        print(f"mempool run: {exc}", file=sys.stderr)
        return 2
    _settings.set_option_overrides(options or {})
    label = {"script": target, "module": f"-m {target}", "code": "-c <code>"}[kind]
    before = _process_snapshot()
    saved_argv, saved_path = sys.argv, list(sys.path)
    mempool.install(pool, arrow=arrow)
    status = 0
    try:
        _execute(kind, target, args)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:            # the program's error, as python shows it
        status = _report_exception(exc, pool)
    finally:
        mempool.uninstall()
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if report:
            print(format_report(pool.stats(), before, _process_snapshot(), label),
                  file=out if out is not None else sys.stderr)
    return status
