"""The ``MEMPOOL_*`` environment variables a pool's settings travel in:
:func:`mempool.install` exports them so processes started later install an
equal pool at start-up (:mod:`mempool._startup` reads them), and
:func:`mempool.uninstall` clears them; and the start-up ``.pth`` line that
reads them.  The variables' names and texts come from the settings table
(:mod:`mempool._settings`).  Imports nothing of the package at load (the
build hook in build_support/ loads this file on its own for PTH_LINE).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

INSTALL_VAR = "MEMPOOL_INSTALL"

PTH_NAME = "mempool-startup.pth"
# One line, as site requires for executable .pth lines ("import" first).
# When MEMPOOL_INSTALL is set it does not import mempool at once: site runs
# .pth files directory by directory, and numpy may sit in a site directory
# not yet on sys.path (a venv over system packages, a --user install).  It
# puts a finder on sys.meta_path that fires when site, once every site
# directory is in place, imports sitecustomize (always attempted, found or
# not): the finder removes itself, installs the pool and declines, so a real
# sitecustomize still loads.
PTH_LINE = (
    "import os, sys; os.environ.get('MEMPOOL_INSTALL', '') not in ('', '0') and "
    "sys.meta_path.insert(0, type('MempoolStartupFinder', (), {'find_spec': "
    "lambda self, name, path=None, target=None: None "
    "if name not in ('sitecustomize', 'usercustomize') or self not in sys.meta_path "
    "else (sys.meta_path.remove(self), __import__('mempool._startup', "
    "fromlist=['_']).install_from_environ(), None)[-1]})())\n")


class StartupConfigError(ValueError):
    """A ``MEMPOOL_*`` variable holds a value the pool cannot take."""


def environ_from_settings(settings: Mapping[str, Any],
                          where: str = "environ_from_settings()") -> Dict[str, str]:
    """``MEMPOOL_*`` values for Pool keyword arguments (the inverse of
    :func:`mempool._startup.settings_from_environ`), each value checked; an
    unknown keyword is a TypeError naming the nearest known one (``where``
    names the caller).  None values are left out."""
    from mempool import _settings
    _settings.check(settings, where)
    out: Dict[str, str] = {}
    for key, value in settings.items():
        s = _settings.SETTINGS[key]
        text = _settings.to_text(s, value)
        if text is not None:
            out[s.env] = text
    return out


def pool_settings(pool: Any) -> Dict[str, Any]:
    """The keyword arguments that rebuild a pool like ``pool``: its config,
    except that a value given as a word (``resident_limit="auto"``) stays
    that word, to be resolved again where the pool is rebuilt."""
    from mempool._settings import _WORDS
    settings = dict(pool.config)
    for key, value in pool._requested.items():
        if isinstance(value, str) and value.strip().lower() in _WORDS.get(key, ()):
            settings[key] = value.strip().lower()
    return settings


# Values of the variables before export_environ(), for clear_environ().
_saved: Optional[Dict[str, Optional[str]]] = None
# The pool whose settings are exported (a weak reference), for reexport().
_exported: Any = None


def export_environ(pool: Any) -> None:
    """Set ``MEMPOOL_INSTALL=1`` and the settings of ``pool`` in os.environ,
    so processes started from now on install an equal pool at start-up."""
    global _saved, _exported
    import weakref
    _exported = weakref.ref(pool)
    from mempool._settings import SETTINGS
    values = environ_from_settings(pool_settings(pool))
    names = [s.env for s in SETTINGS.values()]
    if _saved is None:
        _saved = {var: os.environ.get(var) for var in names}
    for var in names:               # a setting the pool leaves unset must not linger
        if var in values:
            os.environ[var] = values[var]
        else:
            os.environ.pop(var, None)
    os.environ[INSTALL_VAR] = "1"


def clear_environ() -> None:
    """Remove ``MEMPOOL_INSTALL`` from os.environ and put the settings
    variables back to what they were before :func:`export_environ`."""
    global _saved, _exported
    _exported = None
    os.environ.pop(INSTALL_VAR, None)
    if _saved is not None:
        for var, old in _saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
        _saved = None


def reexport(pool: Any) -> None:
    """Export ``pool``'s settings again if they are the ones exported (a
    setting changed on the installed pool)."""
    if _exported is not None and _exported() is pool:
        export_environ(pool)


def pth_text() -> str:
    """The content of ``mempool-startup.pth``."""
    return PTH_LINE
