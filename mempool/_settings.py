"""Every setting of mempool, from two tables.

Pool settings come from the core's table (``MP_CONFIG_LIST`` in
``csrc/include/mempool.h``, exported by ``_core.settings_table()``): each row
gives a :class:`Setting` whose Python keyword, ``MEMPOOL_*`` variable and
``run`` flag derive from its name (a ``_ms`` suffix dropped: Python speaks
seconds).  From these rows come ``Pool``'s keyword arguments, validation,
``Pool.config`` and run-time properties; ``MEMPOOL_*`` parsing; ``python -m
mempool run``'s flags; ``MempoolPlugin``'s and ``mempool.ray``'s arguments;
and the README's table (``scripts/settings_table.py``).

Process options (:data:`OPTIONS`) are what is not a pool's setting: whether
to install at start-up, what ``run`` does around the program.  One
:class:`Option` line each; the same derivation gives its variable and flag.

Values travel in three forms: the Python form (``Pool(decay=1.5)``, sizes
as ints or strings such as ``"2GiB"``, durations as seconds or strings
such as ``"250ms"``), text (a variable or a flag: :func:`from_text`), and
the core's integer (:func:`to_core`, checked by the core itself, whose
reason names the setting, the value and the range).

Adding a pool setting is one line in ``MP_CONFIG_LIST``; a value with words
of its own (``resident_limit="auto"``) also needs an entry in :data:`_WORDS`.
Adding a process option is one :class:`Option` line in :data:`OPTIONS`.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from mempool import _core
from mempool.errors import InvalidArgument

__all__ = ["Setting", "Option", "SETTINGS", "OPTIONS", "PREFIX", "to_core", "to_python",
           "from_text", "to_text", "resolve", "check", "option_value", "known_variables",
           "unknown_variables", "markdown_tables"]

PREFIX = "MEMPOOL_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_INT64_MAX = 2 ** 63 - 1


class Setting:
    """One row of the core's table, with the names derived from it."""

    __slots__ = ("name", "unit", "default", "min", "max", "none", "runtime", "doc", "key")

    def __init__(self, name: str, unit: str, default: int, lo: int, hi: int,
                 none: Optional[int], runtime: bool, doc: str) -> None:
        (self.name, self.unit, self.default, self.min, self.max, self.none, self.runtime,
         self.doc) = name, unit, default, lo, hi, none, runtime, doc   # name: the core's
        self.key = name[:-3] if unit == "ms" and name.endswith("_ms") else name

    @property
    def env(self) -> str:
        """Its variable: ``MEMPOOL_<KEY>``."""
        return PREFIX + self.key.upper()

    @property
    def flag(self) -> str:
        """Its ``run`` flag: ``--<key>`` with dashes."""
        return "--" + self.key.replace("_", "-")

    @property
    def choices(self) -> Optional[List[str]]:
        """The words of a choice (``off|on|auto``), else None."""
        return self.unit.split("|") if "|" in self.unit else None

    def __repr__(self) -> str:
        return f"<Setting {self.key} ({self.unit}), default {to_python(self, self.default)!r}>"


class Option:
    """A process option: not part of a pool, read from ``MEMPOOL_<KEY>``
    (``env``) and/or ``python -m mempool run --<key>`` (``flag``).  ``kind``
    is "flag", "size", "duration", "path" or "text"."""

    __slots__ = ("key", "kind", "default", "env", "flag", "doc")

    def __init__(self, key: str, kind: str, default: Any, *, env: bool, flag: bool,
                 doc: str) -> None:
        self.key, self.kind, self.default, self.doc = key, kind, default, doc
        self.env = PREFIX + key.upper() if env else None
        self.flag = "--" + key.replace("_", "-") if flag else None


#: Pool settings by Python keyword, in the core's table order.
SETTINGS: Dict[str, Setting] = {
    s.key: s for s in (Setting(*row) for row in _core.settings_table())}

#: Process options by key: one line each.
OPTIONS: Dict[str, Option] = {o.key: o for o in [
    Option("install", "flag", False, env=True, flag=False,
           doc="install a pool built from the MEMPOOL_* settings when any Python "
               "interpreter starts (through mempool-startup.pth)"),
    Option("report", "flag", True, env=False, flag=True,
           doc="print the memory report to stderr when the program ends"),
    Option("arrow", "flag", False, env=True, flag=True,
           doc="Arrow's buffers (pandas 3 strings, Parquet data) in the pool too "
               "(mempool.arrow; needs pyarrow)"),
    Option("arrow_cache", "path", "~/.cache/mempool/arrow", env=True, flag=False,
           doc="where the Arrow adapter built on first use is kept"),
    Option("sanitize", "flag", False, env=True, flag=False,
           doc="build time: `setup.py build_ext` builds the extension with ASan + UBSan"),
]}

# Variables of the build scripts, not of the package (no warning for them):
# scripts/build_freethreaded_python.sh documents its MEMPOOL_FT_*.
_SCRIPT_PREFIXES = ("MEMPOOL_FT_",)

# Values run's flags gave the process options (option_value reads them first).
_OPTION_OVERRIDES: Dict[str, Any] = {}


# --------------------------------------------------------------- words --

def _auto_resident_limit() -> Optional[int]:
    """``resident_limit="auto"``: the cgroup or Dask limit, less what the
    process holds outside the pool now (interpreter, libraries); None
    when no limit applies."""
    from mempool._limits import resolve_resident_limit
    limit = resolve_resident_limit("auto")
    if limit is None:
        return None
    return limit - min(limit // 2, _core.process_rss())


def _debug_default() -> Any:
    """``debug=None``: MEMPOOL_DEBUG decides (so ``MEMPOOL_DEBUG=1`` turns
    debug mode on for every pool made without a ``debug`` argument)."""
    text = os.environ.get(SETTINGS["debug"].env, "")
    return from_text(SETTINGS["debug"], text) if text.strip() else None


# Settings whose values have words of their own (resolved when a pool is
# made, in the process that makes it), and defaults that are not the core's.
_WORDS: Dict[str, Dict[str, Callable[[], Any]]] = {
    "resident_limit": {"auto": _auto_resident_limit}}
_DEFAULTS: Dict[str, Callable[[], Any]] = {"debug": _debug_default}


# -------------------------------------------------------- conversions --

def _expected(s: Setting) -> str:
    """What a value of ``s`` may be, for messages."""
    from mempool._units import DURATION_HELP, SIZE_HELP   # on use: not at import
    words = "".join(f", or '{w}'" for w in _WORDS.get(s.key, ()))
    if s.unit == "bytes":
        return SIZE_HELP + words
    if s.unit == "ms":
        return DURATION_HELP + words
    if s.choices:
        return "one of " + ", ".join(repr(c) for c in s.choices)
    if s.unit == "flag":
        return "one of 1/0, true/false, yes/no, on/off"
    return "a whole number" + words


def _bad(label: str, value: Any, what: str, exc: type = ValueError) -> Exception:
    return exc(f"{label}={value!r}: {what}")


def _parse(s: Setting, word: str) -> Any:
    """The Python value of lower-cased text ``word``; a ValueError saying
    what was expected."""
    if word in _WORDS.get(s.key, ()):
        return word
    from mempool._units import parse_duration, parse_size
    if s.unit == "bytes":
        return parse_size(word)
    if s.unit == "ms":
        return parse_duration(word)
    if s.choices:
        if word in s.choices:
            return word
    elif s.unit == "flag":
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    elif word.isdigit():
        return int(word)
    raise ValueError("expected " + _expected(s))


def from_text(s: Setting, text: str, label: Optional[str] = None) -> Any:
    """The Python value of ``text`` (a ``MEMPOOL_*`` variable or a run
    flag) for setting ``s``: an int of bytes, seconds (``math.inf``), a
    bool, an int, a choice's word or one of the setting's own words.  A
    ValueError naming ``label`` (default: the variable) and the text."""
    try:
        return _parse(s, text.strip().lower())
    except ValueError as exc:
        raise _bad(label or s.env, text, str(exc)) from None


def _to_int(s: Setting, value: Any) -> int:
    """The core's integer for a Python value (not None); TypeError or
    ValueError saying what is wrong with it (without naming it)."""
    if isinstance(value, str) and value.strip().lower() in _WORDS.get(s.key, ()):
        value = _WORDS[s.key][value.strip().lower()]()
        if value is None:                       # "auto" found no limit
            return s.default if s.none is None else s.none
    if isinstance(value, str) and s.unit in ("bytes", "ms"):
        value = _parse(s, value.strip().lower())
    if s.unit == "bytes" or s.unit == "count":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError("expected " + _expected(s))
        return int(value)
    if s.unit == "ms":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError("expected " + _expected(s))
        seconds = float(value)
        if math.isnan(seconds) or seconds < 0:
            raise ValueError("expected seconds >= 0, or math.inf (never)")
        if math.isinf(seconds) and s.none is not None:
            return s.none
        return round(seconds * 1000) if seconds < 1e18 else _INT64_MAX + 1
    if s.choices:
        if isinstance(value, bool) and "on" in s.choices and "off" in s.choices:
            value = "on" if value else "off"
        if not isinstance(value, str) or value.strip().lower() not in s.choices:
            raise ValueError("expected " + _expected(s))
        return s.choices.index(value.strip().lower())
    if not (isinstance(value, bool) or getattr(value, "dtype", None) == bool
            or isinstance(value, numbers.Integral) and value in (0, 1)):
        raise TypeError("expected True or False")
    return int(bool(value))


def to_core(s: Setting, value: Any, label: Optional[str] = None,
            text: Optional[str] = None) -> int:
    """The core's integer for a Python value of ``s`` (None: the default),
    checked by the core.  TypeError for a value of the wrong type;
    ValueError for text that does not parse; :class:`InvalidArgument` (a
    ValueError) with the core's reason for a value out of range.  Messages
    start with ``label=value`` (label: the keyword by default; ``text``:
    the text the value was read from, shown instead of it)."""
    label = label or s.key
    shown = f"{label}={value!r}" if text is None else f"{label}={text!r}"
    if value is None:
        value = _DEFAULTS[s.key]() if s.key in _DEFAULTS else None
        if value is None:
            return s.default
    try:
        n = _to_int(s, value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{shown}: {exc}") from None
    if not -_INT64_MAX - 1 <= n <= _INT64_MAX:
        raise InvalidArgument(f"{shown}: larger than any setting can be (at most 2**63 - 1)")
    reason = _core.check_setting(s.name, n)
    if reason is not None:
        plain = text is None and isinstance(value, numbers.Integral) \
            and reason.startswith(f"{label} = ")
        raise InvalidArgument(reason if plain else f"{shown}: {reason}")
    return n


def to_python(s: Setting, n: int) -> Any:
    """The Python form of the core's integer ``n`` for ``s``: None for
    "unlimited"/"none" sizes, seconds (``math.inf``: never), a bool, a word."""
    if s.unit == "ms":
        return math.inf if n == s.none else n / 1000.0
    if n == s.none:
        return None
    if s.choices:
        return s.choices[n] if 0 <= n < len(s.choices) else n
    if s.unit == "flag":
        return bool(n)
    return n


def to_text(s: Setting, value: Any) -> Optional[str]:
    """Text for a ``MEMPOOL_*`` variable that :func:`from_text` reads back
    as ``value`` (None: leave the variable unset)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if s.unit == "ms" and math.isinf(float(value)):
        return "inf"
    return repr(float(value)) if s.unit == "ms" else str(value)


def _unknown_key(settings: Mapping[str, Any], where: str) -> Optional[TypeError]:
    """A TypeError for the first keyword of ``settings`` that is no setting,
    naming the nearest one; None when all are settings."""
    import difflib
    for k, v in settings.items():
        if k not in SETTINGS:
            near = difflib.get_close_matches(k, list(SETTINGS), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            return TypeError(f"{where} got an unexpected keyword argument {k}={v!r}{hint}; "
                             f"settings: {', '.join(SETTINGS)}")
    return None


def resolve(settings: Mapping[str, Any], where: str = "Pool()") -> Dict[str, int]:
    """{core name: int} for Pool keyword arguments (None: default), every
    value checked; an unknown keyword is a TypeError naming the nearest
    known one."""
    unknown = None if settings.keys() <= SETTINGS.keys() else _unknown_key(settings, where)
    if unknown:
        raise unknown
    given = dict.fromkeys(_DEFAULTS)            # defaults that are not the core's apply too
    given.update(settings)
    return {SETTINGS[k].name: to_core(SETTINGS[k], v) for k, v in given.items()}


def check(settings: Mapping[str, Any], where: str) -> None:
    """Validate Pool keyword arguments as ``Pool(**settings)`` would,
    without making a pool ("auto"-like words are left for the pool)."""
    unknown = _unknown_key(settings, where)
    if unknown:
        raise unknown
    for k, v in settings.items():
        if not (isinstance(v, str) and v.strip().lower() in _WORDS.get(k, ())):
            to_core(SETTINGS[k], v)


# ---------------------------------------------------- process options --

def option_value(key: str, environ: Optional[Mapping[str, str]] = None) -> Any:
    """A process option's value: what ``run``'s flag gave it, else its
    variable (parsed; a ValueError naming it when malformed), else its
    default."""
    opt = OPTIONS[key]
    if key in _OPTION_OVERRIDES:
        return _OPTION_OVERRIDES[key]
    env = os.environ if environ is None else environ
    text = env.get(opt.env, "") if opt.env else ""
    if not text.strip():
        return opt.default
    return option_from_text(opt, text, opt.env)


def option_from_text(opt: Option, text: str, label: str) -> Any:
    """Parse a process option's text by its kind."""
    from mempool._units import parse_duration, parse_size
    word = text.strip().lower()
    try:
        if opt.kind == "flag":
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if opt.kind == "size":
            return parse_size(word)
        if opt.kind == "duration":
            return parse_duration(word)
    except ValueError as exc:
        raise _bad(label, text, str(exc)) from None
    return text


def set_option_overrides(values: Mapping[str, Any]) -> None:
    """What ``run``'s flags said about process options (None: not given)."""
    _OPTION_OVERRIDES.clear()
    _OPTION_OVERRIDES.update({k: v for k, v in values.items() if v is not None})


# ----------------------------------------------------------- variables --

def known_variables() -> List[str]:
    """Every ``MEMPOOL_*`` variable mempool reads."""
    return [s.env for s in SETTINGS.values()] + [o.env for o in OPTIONS.values() if o.env]


def unknown_variables(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """One line per ``MEMPOOL_*`` variable of ``environ`` that mempool does
    not read, naming the nearest known one (a typo is otherwise silent)."""
    import difflib
    env = os.environ if environ is None else environ
    known = known_variables()
    out = []
    for var in sorted(env):
        if var.startswith(PREFIX) and var not in known and not var.startswith(_SCRIPT_PREFIXES):
            near = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            out.append(f"{var} is not a mempool setting{hint} "
                       f"(the known ones: python -m mempool run --help, or the README's "
                       f"Settings)")
    return out


def warn_unknown_variables(environ: Optional[Mapping[str, str]] = None) -> None:
    """Issue a :class:`mempool.errors.SettingWarning` per unknown variable."""
    import warnings
    from mempool.errors import SettingWarning
    for line in unknown_variables(environ):
        # the environment is where it comes from: no source line to show
        warnings.warn_explicit(line, SettingWarning, "<environment>", 0, module="mempool")


# ---------------------------------------------------------------- docs --

def _default_text(s: Setting) -> str:
    value = to_python(s, s.default)
    if value is None:
        return "none"
    if s.unit == "bytes":
        from mempool.errors import format_bytes
        return format_bytes(value).replace(".0 ", " ")
    if s.unit == "ms":
        return f"{value:g} s"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _values_text(s: Setting) -> str:
    words = "".join(f", or `{w}`" for w in _WORDS.get(s.key, ()))
    none = "; 0 = none" if s.none is not None and s.unit == "bytes" else ""
    if s.unit == "bytes":
        from mempool.errors import format_bytes
        lo = format_bytes(s.min).replace(".0 ", " ")
        hi = " and up" if s.max == _INT64_MAX else \
            f" to {format_bytes(s.max).replace('.0 ', ' ')}"
        return f"size, {lo}{hi}{none}{words}"
    if s.unit == "ms":
        return f"duration (`1.5s`, `250ms`, seconds); `inf` = never{words}"
    if s.choices:
        return ", ".join(f"`{c}`" for c in s.choices)
    if s.unit == "flag":
        return "`1`/`0` (`true`/`false`, `yes`/`no`, `on`/`off`)"
    return f"{s.min} to {s.max}{words}"


def _flag_text(flag: Optional[str], is_switch: bool) -> str:
    if flag is None:
        return "-"
    return f"`{flag}` / `--no-{flag[2:]}`" if is_switch else f"`{flag}`"


def markdown_tables() -> str:
    """The README's tables of settings and process options, as markdown
    (scripts/settings_table.py writes them; a test compares)."""
    rows = ["| `Pool(...)` | variable | `run` flag | values | default | at run time | what it does |",
            "|---|---|---|---|---|---|---|"]
    for s in SETTINGS.values():
        rows.append(f"| `{s.key}` | `{s.env}` | {_flag_text(s.flag, s.unit == 'flag')} | "
                    f"{_values_text(s)} | {_default_text(s)} | "
                    f"{'yes' if s.runtime else 'no'} | {s.doc} |")
    rows += ["", "| process option | variable | `run` flag | values | default | what it does |",
             "|---|---|---|---|---|---|"]
    for o in OPTIONS.values():
        default = str(o.default).lower() if isinstance(o.default, bool) else o.default
        rows.append(f"| {o.key} | {'`' + o.env + '`' if o.env else '-'} | "
                    f"{_flag_text(o.flag, o.kind == 'flag')} | {o.kind} | {default} | "
                    f"{o.doc} |")
    return "\n".join(rows) + "\n"
