"""Command line: ``python -m mempool {run,demo,bench,replay,stress} ...``.

``run [SETTINGS] SCRIPT [ARGS...]`` (or ``run -m MODULE``, ``run -c CODE``,
as ``python`` accepts them; :mod:`mempool._run`) runs a program unchanged
with a pool installed (every numpy array of the process, new threads
included) and prints a memory report to stderr when it ends.  Its flags are
derived from the settings table: one per pool setting (``--capacity 2GiB``,
``--decay 250ms``, ``--resident-limit auto``, ``--mesh``, ...) over the
``MEMPOOL_*`` variables, and one per process option (``--no-report``).

``demo``, ``bench``, ``replay`` and ``stress`` are tools
(:mod:`mempool.tools`): each hands its arguments to the ``main(argv)`` of its
module, which needs the ``demo`` extra (``pip install 'mempool[demo]'``);
without it ``--help`` says what to install and the tool exits 2.

Errors of the command line are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from mempool._run import UsageError

__all__ = ["main", "build_parser", "run_script", "UsageError"]

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
INSTALL_DEMO = "pip install 'mempool[demo]' (from a clone of the repository: pip install '.[demo]')"
_RUN_USAGE = "python -m mempool run [SETTINGS] (SCRIPT | -m MODULE | -c CODE) [ARGS...]"


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage
    and exiting, so every command-line error is one line."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _metavar(unit: str) -> str:
    return {"bytes": "SIZE", "ms": "DURATION", "count": "N"}.get(unit, unit.upper())


def _run_parser() -> argparse.ArgumentParser:
    """``run``'s options: one per pool setting and per process option with
    a flag, from the settings tables."""
    from mempool import _settings
    run = _Parser(
        prog="python -m mempool run", usage=_RUN_USAGE, allow_abbrev=False,
        description="Run SCRIPT, a directory or zip with __main__.py, -m MODULE or -c CODE "
                    "as __main__ (as python does) with a pool installed process-wide, then "
                    "print a memory report to stderr.  Settings: a flag over its MEMPOOL_* "
                    "variable over the default; sizes as 2GiB, 512MiB, 512MB (10^6 bytes), "
                    "durations as 1.5s, 250ms or inf.  Exit status: the program's.")
    pool = run.add_argument_group("pool settings (each also a MEMPOOL_* variable)")
    for s in _settings.SETTINGS.values():
        text = f"{s.doc} ({s.env}; default {_settings._default_text(s)})"
        if s.unit == "flag":
            pool.add_argument(s.flag, dest=s.key, action=argparse.BooleanOptionalAction,
                              default=None, help=text)
        else:
            words = "".join("|" + w for w in _settings._WORDS.get(s.key, ()))
            pool.add_argument(s.flag, dest=s.key, default=None, help=text,
                              metavar=s.choices and "{" + ",".join(s.choices) + "}"
                              or _metavar(s.unit) + words)
    process = run.add_argument_group("process options")
    for o in _settings.OPTIONS.values():
        if o.flag is None:
            continue
        dest = "option_" + o.key
        if o.kind == "flag":
            process.add_argument(o.flag, dest=dest, action=argparse.BooleanOptionalAction,
                                 default=None, help=f"{o.doc} (default {o.default})")
        else:
            process.add_argument(o.flag, dest=dest, default=None, metavar=o.kind.upper(),
                                 help=o.doc)
    run.epilog = ("Variables without a flag: " + "; ".join(
        f"{o.env} ({o.doc})" for o in _settings.OPTIONS.values() if o.env and not o.flag) + ".")
    run.add_argument("-m", dest="module", metavar="MODULE",
                     help="run library module MODULE as a script (python -m)")
    run.add_argument("-c", dest="code", metavar="CODE",
                     help="run the program passed in as a string (python -c)")
    run.add_argument("script", nargs="?", help="path of the Python script (or a directory "
                                               "or zip file with a __main__.py)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")
    return run


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m mempool`` (subcommands listed)."""
    import mempool
    parser = _Parser(prog="python -m mempool",
                     description="mempool: a pool allocator for numpy arrays.")
    parser.add_argument("--version", action="version",
                        version=f"mempool {mempool.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", add_help=False,
                   help="run a Python script (or -m MODULE, -c CODE) with the pool "
                        "installed and report its memory use at exit")
    for name, (_, text) in _TOOLS.items():
        sub.add_parser(name, help=f"{text} (needs {INSTALL_DEMO})", add_help=False)
    return parser


def run_script(script: str, args: Sequence[str], capacity: Optional[int] = None,
               report: bool = True, out: Optional[TextIO] = None) -> int:
    """Run ``script`` as ``__main__`` with a pool installed; return its exit
    status.  The report goes to ``out`` (default stderr) even when the
    script raises or calls sys.exit()."""
    from mempool import _run
    settings = {} if capacity is None else {"capacity": capacity}
    return _run.run_target("script", script, args, settings, report, out)


def _run_settings(ns: argparse.Namespace) -> Dict[str, Any]:
    """The pool settings run's flags give, each checked (a UsageError
    naming the flag when one is bad)."""
    from mempool import _settings
    out: Dict[str, Any] = {}
    for key, s in _settings.SETTINGS.items():
        value = getattr(ns, key)
        if value is None:
            continue
        try:
            if isinstance(value, str):
                value = _settings.from_text(s, value, s.flag)
            if not (isinstance(value, str) and value in _settings._WORDS.get(key, ())):
                _settings.to_core(s, value, s.flag, getattr(ns, key))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"mempool run: {exc}") from None
        out[key] = value
    return out


def _run_options(ns: argparse.Namespace) -> Dict[str, Any]:
    from mempool import _settings
    out: Dict[str, Any] = {}
    for o in _settings.OPTIONS.values():
        value = getattr(ns, "option_" + o.key, None) if o.flag else None
        if isinstance(value, str):
            try:
                value = _settings.option_from_text(o, value, o.flag)
            except ValueError as exc:
                raise UsageError(f"mempool run: {exc}") from None
        out[o.key] = value
    return out


def _run_command(argv: List[str]) -> int:
    from mempool import _run
    parser = _run_parser()
    options, target, args = _run.split_argv(argv, parser)
    ns = parser.parse_args(options)                  # --help exits 0 here
    if target is None:
        raise UsageError("mempool run: nothing to run: give SCRIPT, -m MODULE or -c CODE "
                         "(see python -m mempool run --help)")
    settings = _run_settings(ns)
    process = _run_options(ns)
    report = process.pop("report", None)
    return _run.run_target(target[0], target[1], args, settings,
                           report=True if report is None else report, options=process)


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
        need = (f"python -m mempool {name} needs the demo extra (missing: "
                f"{', '.join(missing)}); install it with: {INSTALL_DEMO}")
        if "-h" in argv or "--help" in argv:
            print(f"usage: python -m mempool {name} [OPTIONS]\n\n{_TOOLS[name][1]}.\n\n"
                  f"{need}\n(its options are listed once the extra is installed)")
            return 0
        print(need, file=sys.stderr)
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
    try:
        if argv and argv[0] in _TOOLS:
            return _delegate(argv[0], argv[1:])
        if argv and argv[0] == "run":   # the program's own arguments must not meet argparse
            return _run_command(argv[1:])
        parser = build_parser()
        ns = parser.parse_args(argv)
        if ns.command is None:
            parser.print_help()
            return 2
        return 2  # not reached: "run" and the tools are handled above
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
