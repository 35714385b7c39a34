"""The one parser of sizes and durations, for every place a setting is
written as text: ``MEMPOOL_*`` variables, ``python -m mempool run`` flags,
and strings given to ``Pool(...)``, ``MempoolPlugin(...)`` or
``mempool.ray.runtime_env(...)``.

Sizes: a whole number of bytes, or a number with a unit.  ``KiB MiB GiB TiB
PiB`` are powers of 1024; ``kB MB GB TB PB`` powers of 1000 (``"512MB"`` is
512,000,000 bytes); the single letters ``K M G T P`` are powers of 1024, as
``ulimit``, Docker and the JVM read them.  Case, a space before the unit and
``_`` between digits do not matter.

Durations: a number of seconds, or a number with a unit (``ns us ms s m
min h``): ``"1.5s"``, ``"250ms"``, ``"2min"``; ``inf`` (or ``never``) for
"never".

Imports nothing of the package.
"""
from __future__ import annotations

import math
import re

__all__ = ["parse_size", "parse_duration", "SIZE_HELP", "DURATION_HELP"]

# number (digits, decimals, exponent) then letters; compiled on first use
# (re's compiler would add to `import mempool`)
_PATTERN = r"^(\d*)(?:\.(\d*))?(?:e([+-]?\d{1,3}))?\s*([a-zµ]*)$"

_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_p] = _SIZE_UNITS[_p + "ib"] = 1024 ** _i
    _SIZE_UNITS[_p + "b"] = 1000 ** _i

_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
                   "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9,
                   "m": 60.0, "min": 60.0, "mins": 60.0, "h": 3600.0, "hr": 3600.0}

SIZE_HELP = ("a number of bytes or a size such as '512MiB', '2GiB', '512MB' "
             "(MB = 10^6 bytes, MiB = 2^20)")
DURATION_HELP = "a duration such as '1.5s', '250ms', a number of seconds, or 'inf'"


def _split(text: str):
    """``(digits, scale, unit)`` of ``text``: its number is ``digits *
    10**-scale`` exactly (no float rounding); None when it is not a
    non-negative number followed by letters."""
    m = re.match(_PATTERN, text.strip().lower().replace("_", ""))   # re caches it
    if m is None:
        return None
    whole, frac, exponent, unit = m.groups()
    frac = frac or ""
    if not (whole or frac):
        return None
    return int(whole + frac), len(frac) - int(exponent or 0), unit


def parse_size(text: str) -> int:
    """Bytes of a size string (``"512MiB"``, ``"2G"``, ``"512MB"``,
    ``"4096"``); a ValueError saying what is expected otherwise."""
    parsed = _split(text)
    if parsed is None or parsed[2] not in _SIZE_UNITS:
        raise ValueError(f"expected {SIZE_HELP}")
    digits, scale, unit = parsed
    total = digits * _SIZE_UNITS[unit]
    if scale <= 0:
        return total * 10 ** -scale
    whole, rest = divmod(total, 10 ** scale)
    if rest:
        raise ValueError(f"expected a whole number of bytes, or {SIZE_HELP}")
    return whole


def parse_duration(text: str) -> float:
    """Seconds of a duration string (``"1.5s"``, ``"250ms"``, ``"5"``), or
    ``math.inf`` for ``"inf"``/``"never"``; a ValueError otherwise."""
    word = text.strip().lower()
    if word in ("inf", "infinity", "never"):
        return math.inf
    parsed = _split(word)
    if parsed is None or parsed[2] not in _DURATION_UNITS:
        raise ValueError(f"expected {DURATION_HELP}")
    digits, scale, unit = parsed
    return digits / 10 ** scale * _DURATION_UNITS[unit] if scale > 0 \
        else digits * 10 ** -scale * _DURATION_UNITS[unit]
