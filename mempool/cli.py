"""Command line: ``python -m mempool {run,demo,bench,replay,stress} ...``.

``run SCRIPT [ARGS...]`` (or ``run -m MODULE``, ``run -c CODE``, as
``python`` accepts them; :mod:`mempool._run`) runs a program unchanged with
the default pool installed (every numpy array of the process, new threads
included) and prints a memory report to stderr when it ends.  ``demo``,
``bench``, ``replay`` and ``stress`` are tools (:mod:`mempool.tools`): each
hands its arguments to the ``main(argv)`` of its module, which needs the
``demo`` extra (``pip install 'mempool[demo]'``); without it they say what to
install.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import List, Optional, Sequence, TextIO

__all__ = ["main", "build_parser", "run_script"]

# The tools: command -> (module, help).  Each module's main(argv) owns its
# whole argument list (including --help).
_TOOLS = {
    "demo": ("mempool.tools.demo", "run the training-loop demo"),
    "bench": ("mempool.tools.bench", "run the benchmarks and the peer comparison"),
    "replay": ("mempool.tools.replay",
               "replay allocation traces under the pool, malloc and peers"),
    "stress": ("mempool.tools.stress",
               "seeded adversarial allocation run under the pool and peers"),
}
# What the `demo` extra of pyproject.toml installs for them.
DEMO_EXTRA = ("rich", "matplotlib", "psutil")
INSTALL_DEMO = "pip install 'mempool[demo]'"


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m mempool`` (subcommands listed)."""
    parser = argparse.ArgumentParser(
        prog="python -m mempool",
        description="mempool: a pool allocator for numpy arrays.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run a Python script (or -m MODULE, -c CODE) with the pool "
                    "installed and report its memory use at exit",
        usage="python -m mempool run [--capacity BYTES] [--arrow] [--no-report] "
              "[--summary] [--history FILE] (SCRIPT | -m MODULE | -c CODE) [ARGS...]",
        description="Run SCRIPT, -m MODULE or -c CODE as __main__ (as python "
                    "does) with mempool installed process-wide, then print a "
                    "memory report to stderr.")
    run.add_argument("--capacity", type=int, default=None,
                     help="pool capacity in bytes (default: unlimited)")
    run.add_argument("--no-report", action="store_true",
                     help="do not print the report")
    run.add_argument("--arrow", action="store_true",
                     help="Arrow's buffers too (pandas 3 strings, Parquet): needs pyarrow")
    run.add_argument("--summary", action="store_true",
                     help="print the pool's memory summary at exit, in this process and "
                          "in every child the pool reaches (MEMPOOL_SHOW_STATS=1)")
    run.add_argument("--history", metavar="FILE", default=None,
                     help="record the pool's history with call sites and write it as a "
                          "snapshot (docs/snapshot-schema.md) to FILE at exit; child "
                          "processes write FILE-<pid> (MEMPOOL_HISTORY=FILE)")
    run.add_argument("-m", dest="module", metavar="MODULE",
                     help="run library module MODULE as a script (python -m)")
    run.add_argument("-c", dest="code", metavar="CODE",
                     help="run the program passed in as a string (python -c)")
    run.add_argument("script", nargs="?", help="path of the Python script")
    run.add_argument("args", nargs=argparse.REMAINDER,
                     help="arguments passed to the script")
    for name, (_, text) in _TOOLS.items():
        sub.add_parser(name, help=f"{text} (needs {INSTALL_DEMO})", add_help=False)
    return parser


def run_script(script: str, args: Sequence[str], capacity: Optional[int] = None,
               report: bool = True, out: Optional[TextIO] = None) -> int:
    """Run ``script`` as ``__main__`` with a pool installed; return its exit
    status.  The report goes to ``out`` (default stderr) even when the
    script raises or calls sys.exit()."""
    from mempool import _run
    return _run.run_target("script", script, args, capacity, report, out)


def _run_command(parser: argparse.ArgumentParser, argv: List[str]) -> int:
    from mempool import _run
    try:
        options, target, args = _run.split_argv(argv)
    except _run.RunUsageError as exc:
        print(f"mempool run: {exc}", file=sys.stderr)
        return 2
    ns = parser.parse_args(["run", *options])   # --help, --capacity checks
    if target is None:
        parser.parse_args(["run", "--help"])
        return 2
    if ns.arrow:
        from mempool.arrow import ArrowAdapterError, require_pyarrow
        try:
            require_pyarrow()
        except ArrowAdapterError as exc:
            print(f"mempool run --arrow: {exc}", file=sys.stderr)
            return 2
    return _run.run_target(target[0], target[1], args, capacity=ns.capacity,
                           report=not ns.no_report, arrow=ns.arrow, summary=ns.summary,
                           history=ns.history)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _missing_extra() -> List[str]:
    return [dep for dep in DEMO_EXTRA if not _importable(dep)]


def _delegate(name: str, argv: List[str]) -> int:
    module_name = _TOOLS[name][0]
    if name == "bench" and "--real" in argv:  # the real-library suite
        module_name = "mempool.tools.realbench"
    missing = _missing_extra()
    if missing:
        print(f"python -m mempool {name} needs the demo extra (missing: "
              f"{', '.join(missing)}); install it with: {INSTALL_DEMO}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (module_name, "mempool", "mempool.tools"):
            raise
        print(f"python -m mempool {name}: {module_name} is not available in "
              f"this installation", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m mempool``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _TOOLS:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    if argv and argv[0] == "run":   # the program's own arguments must not meet argparse
        return _run_command(parser, argv[1:])
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    return 2  # not reached: "run" and the tools are handled above
