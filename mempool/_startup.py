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
import os
import sys
from typing import Any, Dict, Mapping, Optional

# re-exported: the start-up install and mempool.dask/mempool.ray use them here
from mempool._environ import (INSTALL_VAR, PTH_LINE, PTH_NAME,  # noqa: F401
                              StartupConfigError, clear_environ, environ_from_settings,
                              export_environ, pool_settings, pth_text)

__all__ = ["PTH_NAME", "PTH_LINE", "INSTALL_VAR", "settings_from_environ",
           "environ_from_settings", "export_environ", "clear_environ",
           "install_from_environ", "install_pool", "enabled"]


def enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``MEMPOOL_INSTALL`` asks for the pool (set, and true)."""
    from mempool import _settings
    try:
        return bool(_settings.option_value("install", environ))
    except ValueError as exc:
        raise StartupConfigError(str(exc)) from None


def arrow_from_environ(environ: Optional[Mapping[str, str]] = None, *,
                       warn_missing: bool = False) -> bool:
    """Whether the ``arrow`` process option (``MEMPOOL_ARROW``) asks for
    Arrow's buffers in the pool too (:func:`mempool.install` with
    ``arrow=True``); a malformed value is a StartupConfigError.  Without
    pyarrow it is False, with a line on stderr when ``warn_missing``."""
    from mempool import _settings
    try:
        arrow = bool(_settings.option_value("arrow", environ))
    except ValueError as exc:
        raise StartupConfigError(str(exc)) from None
    if arrow and importlib.util.find_spec("pyarrow") is None:
        if warn_missing:
            print(f"mempool: {_settings.OPTIONS['arrow'].env}=1 ignored: pyarrow is not "
                  f"installed (pip install 'mempool[arrow]')", file=sys.stderr)
        return False
    return arrow


def settings_from_environ(environ: Optional[Mapping[str, str]] = None, *,
                          warn: bool = True) -> Dict[str, Any]:
    """The Pool keyword arguments the ``MEMPOOL_*`` variables ask for (only
    those set and non-empty).  Every variable is parsed, and checked by the
    core's table, before anything happens, so a malformed one is a
    :class:`StartupConfigError` naming it and its value.  A ``MEMPOOL_*``
    variable mempool does not read gets a SettingWarning naming the nearest
    known one (``warn``)."""
    from mempool import _settings
    env = os.environ if environ is None else environ
    if warn:
        _settings.warn_unknown_variables(env)
    settings: Dict[str, Any] = {}
    try:
        for key, s in _settings.SETTINGS.items():
            raw = env.get(s.env, "")
            if raw.strip():
                settings[key] = value = _settings.from_text(s, raw)
                if not (isinstance(value, str) and value in _settings._WORDS.get(key, ())):
                    _settings.to_core(s, value, s.env, raw)
    except (TypeError, ValueError) as exc:
        raise StartupConfigError(str(exc)) from None
    return settings


def install_pool(settings: Mapping[str, Any], arrow: bool = False) -> Any:
    """Make a pool of ``settings``, make it the default pool
    (:func:`mempool.default_pool`) and install it (``arrow``: Arrow's
    buffers too); the start-up install and Ray's setup hook come here."""
    import mempool
    from mempool import dropin
    pool = mempool.Pool(**settings)
    dropin._set_default(pool)
    return mempool.install(pool, arrow=arrow)


def install_from_environ() -> Optional[Any]:
    """What the ``.pth`` line calls when ``MEMPOOL_INSTALL`` is set: install
    a pool built from the ``MEMPOOL_*`` settings and return it.

    A malformed variable, or settings the pool refuses, install nothing:
    the error, naming the variable(s) and value(s), goes to stderr and the
    program runs with numpy's default allocator (raising here would only
    make ``site`` print "Error in sitecustomize" and carry on anyway)."""
    try:
        if not enabled():
            return None
        settings = settings_from_environ()
        import mempool
        if mempool.installed() is not None:   # already done (two .pth files)
            return mempool.installed()
        try:
            return install_pool(settings, arrow=arrow_from_environ(warn_missing=True))
        except (TypeError, ValueError, MemoryError) as exc:
            from mempool import _settings
            shown = ", ".join(f"{_settings.SETTINGS[k].env}={os.environ[_settings.SETTINGS[k].env]!r}"
                              for k in settings)
            raise StartupConfigError(f"{exc} (from {shown or 'the defaults'})") from None
    except StartupConfigError as exc:
        print(f"mempool: not installed at start-up: {exc}", file=sys.stderr)
        return None
