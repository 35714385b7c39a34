"""Start-up install: ``MEMPOOL_INSTALL=1`` puts the pool in place when the
interpreter starts, before the program runs a line, starts a thread or an
event loop, and without the program importing mempool.

The package ships ``mempool-startup.pth`` in site-packages (see
:data:`PTH_LINE`).  ``site`` executes its one line at every interpreter start;
when ``MEMPOOL_INSTALL`` is unset the line only reads ``os.environ`` (``os``
is already imported by ``site``), so it costs nothing.  When it is set, this
module builds a :class:`mempool.Pool` from the ``MEMPOOL_*`` settings and
installs it in the main thread's context, which every later thread (through
:func:`mempool.install`'s thread hook), asyncio task and executor job copies.

:func:`export_environ` (called by :func:`mempool.install`) writes the same
variables into ``os.environ``, so spawned and forkserver children and
subprocesses started from then on install an equal pool at their start.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from typing import Any, Dict, Mapping, Optional

# re-exported: the start-up install and mempool.dask/mempool.ray use them here
from mempool._environ import (INSTALL_VAR, PTH_LINE, PTH_NAME, SETTINGS,  # noqa: F401
                              StartupConfigError, _bad, clear_environ, environ_from_settings,
                              export_environ, parse_bytes, pool_settings, pth_text)

__all__ = ["PTH_NAME", "PTH_LINE", "INSTALL_VAR", "SETTINGS", "settings_from_environ",
           "environ_from_settings", "export_environ", "clear_environ",
           "install_from_environ", "enabled"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

def _parse_flag(var: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(var, value, "one of 1/0, true/false, yes/no, on/off")


def _parse_decay(var: str, value: str) -> float:
    text = value.strip().lower()
    if text in ("inf", "infinity", "never"):
        return math.inf
    try:
        seconds = float(text)
    except ValueError:
        raise _bad(var, value, "a number of seconds or 'inf'") from None
    if math.isnan(seconds) or seconds < 0:
        raise _bad(var, value, "a number of seconds >= 0 or 'inf'")
    return seconds


def _parse_huge_pages(var: str, value: str) -> str:
    text = value.strip().lower()
    if text not in ("auto", "on", "off"):
        raise _bad(var, value, "'auto', 'on' or 'off'")
    return text


def _parse_count(var: str, value: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        raise _bad(var, value, "a whole number") from None
    if count < 0:
        raise _bad(var, value, "a whole number >= 0")
    return count


def _parse_limit(var: str, value: str) -> Any:
    if value.strip().lower() == "auto":
        return "auto"   # resolved by the Pool (cgroup, Dask worker)
    return parse_bytes(var, value)


_PARSERS = {
    "capacity": parse_bytes, "small_max": parse_bytes, "huge_pages": _parse_huge_pages,
    "decay": _parse_decay, "debug": _parse_flag, "background_purge": _parse_flag,
    "retain_arenas": _parse_count,
    "resident_limit": _parse_limit,
    "mesh": _parse_flag,
}


def enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``MEMPOOL_INSTALL`` asks for the pool (set, and not "0")."""
    env = os.environ if environ is None else environ
    value = env.get(INSTALL_VAR, "").strip().lower()
    if value in ("",) + _FALSE:
        return False
    if value in _TRUE:
        return True
    raise _bad(INSTALL_VAR, env[INSTALL_VAR], "1 (install) or 0/unset")


def arrow_from_environ(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``MEMPOOL_ARROW`` asks for Arrow's buffers in the pool too
    (:func:`mempool.install` with ``arrow=True``)."""
    env = os.environ if environ is None else environ
    value = env.get("MEMPOOL_ARROW", "")
    return bool(value.strip()) and _parse_flag("MEMPOOL_ARROW", value)


def check_pool_settings(settings: Mapping[str, Any]) -> None:
    """Validate Pool keyword arguments as ``Pool(**settings)`` would, without
    making a pool: an unknown keyword is a TypeError naming it; a bad value
    the Pool's own ValueError/TypeError naming it."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        shown = ", ".join(f"{k}={settings[k]!r}" for k in unknown)
        raise TypeError(f"unknown mempool pool setting(s) {shown}; "
                        f"known: {', '.join(sorted(SETTINGS))}")
    from mempool.pool import _config_overrides  # the Pool's own validation
    _config_overrides(settings.get("capacity"), settings.get("small_max"),
                      settings.get("huge_pages", "auto"), settings.get("decay"),
                      settings.get("debug", False), settings.get("background_purge", True),
                      settings.get("retain_arenas"), settings.get("resident_limit"),
                      settings.get("mesh", False))


def settings_from_environ(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The Pool keyword arguments the ``MEMPOOL_*`` variables ask for (only
    those set and non-empty).  Every variable is parsed, and checked by
    building the configuration, before anything happens, so a malformed one
    is a :class:`StartupConfigError` naming it and its value."""
    env = os.environ if environ is None else environ
    settings: Dict[str, Any] = {}
    for key, var in SETTINGS.items():
        raw = env.get(var, "")
        if raw.strip():
            settings[key] = _PARSERS[key](var, raw)
    try:
        check_pool_settings(settings)
    except (TypeError, ValueError) as exc:
        shown = ", ".join(f"{SETTINGS[k]}={env[SETTINGS[k]]!r}" for k in settings)
        raise StartupConfigError(f"{exc} (from {shown})") from None
    return settings


def install_from_environ() -> Optional[Any]:
    """What the ``.pth`` line calls when ``MEMPOOL_INSTALL`` is set: install
    a pool built from the ``MEMPOOL_*`` settings and return it.

    A malformed variable installs nothing: the error, naming the variable
    and its value, goes to stderr and the program runs with numpy's
    default allocator (raising here would only make ``site`` print a
    traceback and carry on anyway)."""
    try:
        if not enabled():
            return None
        settings = settings_from_environ()
        import mempool
        if mempool.installed() is not None:   # already done (two .pth files)
            return mempool.installed()
        arrow = arrow_from_environ()
        if arrow and importlib.util.find_spec("pyarrow") is None:
            print("mempool: MEMPOOL_ARROW=1 ignored: pyarrow is not installed "
                  "(pip install 'mempool[arrow]')", file=sys.stderr)
            arrow = False
        pool = mempool.Pool(**settings)
        return mempool.install(pool, arrow=arrow)
    except StartupConfigError as exc:
        print(f"mempool: not installed at start-up: {exc}", file=sys.stderr)
        return None

