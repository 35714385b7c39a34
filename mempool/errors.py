"""Exceptions raised by mempool, and the one mapping from core error codes.

The native core (``csrc/include/mempool.h``) reports every failure as a negative
``MP_E*`` code and never raises; this module is the only place that turns a
code into a Python exception.  The codes, their names and texts come from
the core's ``MP_ERROR_LIST`` (through ``_core.error_table()``): Python names
a code by its symbol (``MP_ENOMEM``), never by its value, and each exception
class names the code it stands for (``error_name``).

Each exception class also derives from the builtin that numpy users already catch (``MemoryError`` for exhaustion,
``ValueError`` for a bad pointer or argument), so existing ``except`` clauses
keep working.

Sizes are always in the message, in bytes and in a human unit, because an
allocation failure without the numbers is the question "why?" left open.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Type

from mempool import _core

__all__ = [
    "MempoolError", "PoolExhausted", "InvalidArgument", "DoubleFree",
    "ForeignPointer", "InteriorPointer", "SizeMismatch", "SizeOverflow",
    "InvalidAlignment", "PoolBusy", "PoolClosed", "HeapCorruption",
    "HeapCorruptionWarning", "SettingWarning", "ERROR_NAMES", "ERROR_TEXTS", "CODES",
    "MP_OK", "MP_ENOMEM", "MP_EBUSY", "MP_ECORRUPT",
    "error_from_code", "format_bytes",
]

_TABLE = _core.error_table()
#: code -> symbolic name ("MP_EDOUBLEFREE"), MP_OK included.
ERROR_NAMES: Dict[int, str] = {code: name for code, name, _ in _TABLE}
#: code -> the core's text for it (mp_strerror).
ERROR_TEXTS: Dict[int, str] = {code: text for code, _, text in _TABLE}
#: symbolic name -> code.
CODES: Dict[str, int] = {name: code for code, name, _ in _TABLE}
# The codes Python code tests for by value.
MP_OK = CODES["MP_OK"]
MP_ENOMEM = CODES["MP_ENOMEM"]
MP_EBUSY = CODES["MP_EBUSY"]
MP_ECORRUPT = CODES["MP_ECORRUPT"]


def format_bytes(n: Optional[int]) -> str:
    """Return ``n`` bytes as a short human string ("1.5 MiB"); None -> "unlimited"."""
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop returns on its last unit


def _sized(n: Optional[int]) -> str:
    if n is None:
        return "unlimited"
    return f"{format_bytes(n)} ({n} bytes)"


class MempoolError(Exception):
    """Base class of every error mempool raises.

    ``code`` is the core's error code (negative ``MP_E*`` value) or None when
    the error was detected in Python.
    """

    code: Optional[int] = None
    #: The MP_ERROR_LIST name of the code this class stands for (subclasses).
    error_name: Optional[str] = None

    def __init__(self, message: str, *, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PoolExhausted(MempoolError, MemoryError):
    """The pool could not satisfy a request: its capacity is used up (or the
    OS refused more address space).

    Attributes: ``requested`` (bytes asked for, or None when unknown),
    ``capacity`` (bytes, None for an unlimited pool), ``live_bytes`` (bytes
    live in the pool when the request failed), ``resident_limit``, and
    ``pool`` (the pool that refused, when known).  ``what`` replaces the
    first words of the message (the cause, when it is not the usual one).
    """

    error_name = "MP_ENOMEM"
    code = MP_ENOMEM

    def __init__(self, requested: Optional[int], capacity: Optional[int],
                 live_bytes: int, *, detail: str = "",
                 resident_limit: Optional[int] = None, pool: Any = None,
                 what: Optional[str] = None) -> None:
        self.requested = requested
        self.capacity = capacity
        self.live_bytes = live_bytes
        self.resident_limit = resident_limit
        self.pool = pool
        req = "an unknown size" if requested is None else _sized(requested)
        if what is None:
            what = ("the OS refused more memory" if capacity is None
                    else "pool capacity exhausted")
            if resident_limit is not None:
                what += " or the resident limit reached"
        msg = (f"{what}: requested {req}, capacity {_sized(capacity)}, "
               f"live {_sized(live_bytes)}")
        if resident_limit is not None:
            msg += f", resident limit {_sized(resident_limit)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, code=MP_ENOMEM)


class InvalidArgument(MempoolError, ValueError):
    """An argument the core rejected (MP_EINVAL), e.g. an inconsistent config."""

    error_name = "MP_EINVAL"
    code = CODES[error_name]


class DoubleFree(MempoolError, ValueError):
    """A block was freed (or reallocated) after it had already been freed."""

    error_name = "MP_EDOUBLEFREE"
    code = CODES[error_name]


class ForeignPointer(MempoolError, ValueError):
    """A pointer that this pool never handed out was given back to it."""

    error_name = "MP_EFOREIGN"
    code = CODES[error_name]


class InteriorPointer(MempoolError, ValueError):
    """A pointer into the middle of a block, not its start, was given back."""

    error_name = "MP_EINTERIOR"
    code = CODES[error_name]


class SizeMismatch(MempoolError, ValueError):
    """A size given with a block differs from the size it was requested with,
    or is too large for the block."""

    error_name = "MP_ESIZE"
    code = CODES[error_name]


class SizeOverflow(MempoolError, OverflowError, MemoryError):
    """``count * size`` does not fit in a size_t.

    It is an OverflowError (the arithmetic failed) and a MemoryError (code
    that catches allocation failures catches it too)."""

    error_name = "MP_EOVERFLOW"
    code = CODES[error_name]


class InvalidAlignment(MempoolError, ValueError):
    """An alignment that is not a power of two, or is larger than 1 GiB."""

    error_name = "MP_EALIGN"
    code = CODES[error_name]


class PoolBusy(MempoolError, RuntimeError):
    """The pool cannot be closed: blocks are still live, or numpy still has
    it as a data-memory handler somewhere.  ``live_bytes`` says how much."""

    error_name = "MP_EBUSY"
    code = CODES[error_name]

    def __init__(self, message: str, *, live_bytes: int = 0) -> None:
        super().__init__(message)
        self.live_bytes = live_bytes


class PoolClosed(MempoolError, ValueError):
    """The pool was closed with ``Pool.close()`` and cannot be used."""


class HeapCorruption(MempoolError, RuntimeError):
    """Debug mode found memory written where it must not be: past a block's
    requested size (its canary) or into a block while it was free."""

    error_name = "MP_ECORRUPT"
    code = CODES[error_name]


class HeapCorruptionWarning(RuntimeWarning):
    """Issued (debug mode) for each corruption report of the core: names the
    block (address, requested size, size class or "large", arena base and
    offset) and the first overwritten byte.  ``report`` is the raw dict.
    The memory stays usable: the free that found it still freed the block."""

    def __init__(self, message: str, report: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.report = report or {}


class SettingWarning(UserWarning):
    """A ``MEMPOOL_*`` variable that mempool does not read (a typo of one it
    does, whose name the message gives), seen where mempool reads its
    settings from the environment: the start-up install, ``python -m
    mempool run``, Ray's setup hook."""


_KIND_TEXT = {1: "canary after the requested size overwritten",
              2: "freed block written to while it was free"}


def describe_corruption(report: Dict[str, Any]) -> str:
    """One line naming the block of a core corruption report (a dict with
    the fields of mp_corruption_report)."""
    cls = report["size_class"]
    where = ("large block" if cls == -1 else "direct mapping" if cls == -2
             else f"size class {cls}")
    what = _KIND_TEXT.get(report["kind"], f"corruption kind {report['kind']}")
    return (f"mempool heap corruption: {what}: block 0x{report['address']:x} "
            f"(requested {_sized(report['requested'])}, {where} of "
            f"{_sized(report['block_bytes'])}), arena 0x{report['region_base']:x} "
            f"+ 0x{report['offset']:x}, first bad byte at block offset "
            f"{report['bad_offset']}")


def _code_classes() -> Dict[int, Type[MempoolError]]:
    """code -> the exception class naming it (every subclass with an
    ``error_name``), checked against the core's table at import."""
    out: Dict[int, Type[MempoolError]] = {}
    todo = list(MempoolError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.error_name is not None:
            if cls.error_name not in CODES:
                raise ImportError(f"{cls.__name__} names {cls.error_name}, which the "
                                  f"core's MP_ERROR_LIST does not have")
            out[CODES[cls.error_name]] = cls
    return out


_CLASSES = _code_classes()

# Context keys that are byte counts (printed with a unit) vs. plain values.
_SIZE_KEYS = ("size", "old_size", "new_size", "block_size", "length")


def _describe(context: Dict[str, Any]) -> str:
    parts = []
    for key, value in context.items():
        if value is None or key in ("capacity", "live_bytes", "requested"):
            continue
        if key == "address":
            parts.append(f"address 0x{int(value):x}")
        elif key in _SIZE_KEYS:
            parts.append(f"{key.replace('_', ' ')} {_sized(int(value))}")
        else:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts)


def error_from_code(code: int, **context: Any) -> MempoolError:
    """Return (not raise) the exception for core error ``code``.

    ``context`` adds the facts of the failed call to the message: ``size``,
    ``old_size``, ``new_size``, ``count``, ``align``, ``address``; for
    MP_ENOMEM also ``requested``, ``capacity`` (None = unlimited) and
    ``live_bytes``, which become attributes of :class:`PoolExhausted`.
    Unknown codes give a plain :class:`MempoolError`.
    """
    if code >= 0:
        raise ValueError(f"error_from_code needs a negative error code, got {code}")
    if code == MP_ENOMEM:
        requested = context.get("requested", context.get("size"))
        detail = _describe({k: v for k, v in context.items()
                            if k not in ("size", "resident_limit")})
        return PoolExhausted(requested, context.get("capacity"),
                             int(context.get("live_bytes") or 0), detail=detail,
                             resident_limit=context.get("resident_limit"))
    name = ERROR_NAMES.get(code, "MP_UNKNOWN")
    text = ERROR_TEXTS.get(code, f"unknown error code {code}")
    detail = _describe(context)
    msg = f"{text} [{name}]" + (f": {detail}" if detail else "")
    if code == MP_EBUSY:
        return PoolBusy(msg, live_bytes=int(context.get("live_bytes") or 0))
    cls = _CLASSES.get(code)
    if cls is None:
        return MempoolError(msg, code=code)
    return cls(msg, code=code)
