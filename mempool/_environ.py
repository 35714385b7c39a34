"""The ``MEMPOOL_*`` environment variables a pool's settings travel in:
:func:`mempool.install` exports them so processes started later install an
equal pool at start-up (:mod:`mempool._startup` reads them), and
:func:`mempool.uninstall` clears them; and the start-up ``.pth`` line that
reads them.  Imports nothing of the package (the build hook in
build_support/ loads this file on its own).
"""
from __future__ import annotations

import math
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

# Pool keyword -> environment variable.  MEMPOOL_DEBUG is also read by
# Pool(debug=None) itself.
SETTINGS: Dict[str, str] = {
    "capacity": "MEMPOOL_CAPACITY",
    "small_max": "MEMPOOL_SMALL_MAX",
    "huge_pages": "MEMPOOL_HUGE_PAGES",
    "decay": "MEMPOOL_DECAY",
    "debug": "MEMPOOL_DEBUG",
    "background_purge": "MEMPOOL_BACKGROUND_PURGE",
    "retain_arenas": "MEMPOOL_RETAIN_ARENAS",
    "resident_limit": "MEMPOOL_RESIDENT_LIMIT",
    "mesh": "MEMPOOL_MESH",
}


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
          "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


class StartupConfigError(ValueError):
    """A ``MEMPOOL_*`` variable holds a value the pool cannot take."""


def _bad(var: str, value: str, expected: str) -> StartupConfigError:
    return StartupConfigError(f"{var}={value!r}: expected {expected}")


def parse_bytes(var: str, value: str) -> int:
    """``"536870912"``, ``"512MiB"``, ``"1.5G"`` -> bytes (binary units);
    anything else is a :class:`StartupConfigError` naming ``var`` and ``value``."""
    text = value.strip().lower().replace("_", "")
    number = text.rstrip("kmgtib")
    unit = text[len(number):].strip()
    number = number.strip()
    if unit not in _UNITS or not number:
        raise _bad(var, value, "a number of bytes, optionally with a unit "
                               "(K, M, G, T, KiB, MiB, GiB, TiB)")
    try:
        amount = float(number) if "." in number or "e" in number else int(number)
    except ValueError:
        raise _bad(var, value, "a number of bytes") from None
    total = amount * _UNITS[unit]
    if isinstance(total, float) and (math.isnan(total) or math.isinf(total)):
        raise _bad(var, value, "a finite number of bytes")
    if total < 0:
        raise _bad(var, value, "a non-negative number of bytes")
    return int(total)


def environ_from_settings(settings: Mapping[str, Any]) -> Dict[str, str]:
    """``MEMPOOL_*`` values for Pool keyword arguments (the inverse of
    :func:`settings_from_environ`); an unknown keyword is a TypeError naming it."""
    out: Dict[str, str] = {}
    for key, value in settings.items():
        if key not in SETTINGS:
            raise TypeError(f"unknown mempool pool setting {key!r}={value!r}; "
                            f"known: {', '.join(sorted(SETTINGS))}")
        if value is None:
            continue
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif key == "decay" and math.isinf(float(value)):
            text = "inf"
        else:
            text = str(value)
        out[SETTINGS[key]] = text
    return out


def pool_settings(pool: Any) -> Dict[str, Any]:
    """The settable keyword arguments that rebuild a pool like ``pool``."""
    cfg = pool.config
    return {"capacity": cfg["capacity"], "small_max": cfg["small_max"],
            "huge_pages": cfg["huge_pages"], "decay": cfg["decay"],
            "debug": cfg["debug"], "background_purge": cfg["background_purge"],
            "retain_arenas": cfg["retain_arenas"], "resident_limit": cfg["resident_limit"],
            "mesh": cfg["mesh"]}


# Values of the variables before export_environ(), for clear_environ().
_saved: Optional[Dict[str, Optional[str]]] = None


def export_environ(pool: Any) -> None:
    """Set ``MEMPOOL_INSTALL=1`` and the settings of ``pool`` in os.environ,
    so processes started from now on install an equal pool at start-up."""
    global _saved
    values = environ_from_settings(pool_settings(pool))
    if _saved is None:
        _saved = {var: os.environ.get(var) for var in SETTINGS.values()}
    for var in SETTINGS.values():   # a setting the pool leaves unset must not linger
        if var in values:
            os.environ[var] = values[var]
        else:
            os.environ.pop(var, None)
    os.environ[INSTALL_VAR] = "1"


def clear_environ() -> None:
    """Remove ``MEMPOOL_INSTALL`` from os.environ and put the settings
    variables back to what they were before :func:`export_environ`."""
    global _saved
    os.environ.pop(INSTALL_VAR, None)
    if _saved is not None:
        for var, old in _saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
        _saved = None


def pth_text() -> str:
    """The content of ``mempool-startup.pth``."""
    return PTH_LINE
