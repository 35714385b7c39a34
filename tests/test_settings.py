"""The settings table and everything derived from it: Pool's keywords,
config and attributes, run-time changes, the one size/duration parser,
MEMPOOL_* parsing and the unknown-variable warning, the README's table,
error types, and which pool owns an array."""
import inspect
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import mempool
from mempool import InvalidArgument, Pool, PoolExhausted, SettingWarning, _core, _settings
from mempool import _startup
from mempool._units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


# ------------------------------------------------------------ the table --

def test_every_row_reaches_pool_config_variable_and_flag():
    rows = _core.settings_table()
    assert [s.name for s in _settings.SETTINGS.values()] == [r[0] for r in rows]
    params = inspect.signature(Pool).parameters
    cfg = Pool().config
    for key, s in _settings.SETTINGS.items():
        assert key in params and params[key].default is None
        assert key in cfg and hasattr(Pool, key)
        assert s.env == "MEMPOOL_" + key.upper() and s.flag == "--" + key.replace("_", "-")
        assert s.doc and getattr(Pool, key).__doc__.startswith(s.doc)
    assert _settings.SETTINGS["decay"].name == "decay_ms"      # Python speaks seconds
    assert list(cfg) == list(_settings.SETTINGS)


def test_defaults_come_from_the_core():
    core = _core.default_config()
    for key, s in _settings.SETTINGS.items():
        assert core[s.name] == s.default
    cfg = Pool(debug=False).config
    assert cfg["decay"] == core["decay_ms"] / 1000 and cfg["capacity"] is None
    assert cfg["huge_pages"] == "auto" and cfg["retain_arenas"] == core["retain_arenas"]


def test_readme_table_is_the_codes():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import settings_table
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text()
    expected = settings_table.replace_table(readme, _settings.markdown_tables())
    assert readme == expected, ("README.md's settings table differs from the code's: run "
                                "python scripts/settings_table.py --write")
    for s in _settings.SETTINGS.values():         # RESIDENT_LIMIT was missing once
        assert f"`{s.env}`" in readme


# -------------------------------------------------------------- parsing --

@pytest.mark.parametrize("text, expected", [
    ("2GiB", 2 << 30), ("512MB", 512 * 10 ** 6), ("512 MB", 512 * 10 ** 6),
    ("512MiB", 512 << 20), ("512M", 512 << 20), ("1.5KiB", 1536), ("4096", 4096),
    ("1kB", 1000), ("3 TB", 3 * 10 ** 12),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1.5s", 1.5), ("250ms", 0.25), ("5", 5.0), ("inf", math.inf), ("never", math.inf),
    ("2min", 120.0), ("100us", 1e-4),
])
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "-1", "1.5 apples", "nan", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_size_strings_work_everywhere():
    assert Pool(capacity="2GiB").capacity == 2 << 30
    assert Pool(capacity="512MB").capacity == 512 * 10 ** 6   # was read as MiB
    assert Pool(resident_limit="64MiB", decay="250ms").config["decay"] == 0.25
    assert _startup.settings_from_environ({"MEMPOOL_CAPACITY": "512 MB"}) == \
        {"capacity": 512 * 10 ** 6}
    from mempool import ray as mray
    assert mray.runtime_env(capacity="2GiB")["env_vars"] == {"MEMPOOL_CAPACITY": "2GiB"}


def test_malformed_variables_are_named():
    for var, value in [("MEMPOOL_DECAY", "abc"), ("MEMPOOL_CAPACITY", "1M"),
                       ("MEMPOOL_HUGE_PAGES", "maybe"), ("MEMPOOL_MESH", "2")]:
        with pytest.raises(_startup.StartupConfigError, match=f"{var}={value!r}"):
            _startup.settings_from_environ({var: value})


def test_unknown_variable_names_the_nearest():
    with pytest.warns(SettingWarning, match="MEMPOOL_DECY is not a mempool setting; did "
                                            "you mean MEMPOOL_DECAY"):
        assert _startup.settings_from_environ({"MEMPOOL_DECY": "5"}) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _startup.settings_from_environ({"MEMPOOL_DECAY": "5", "MEMPOOL_INSTALL": "1",
                                        "OTHER": "x"})
    lines = _settings.unknown_variables({"MEMPOOL_ZZZZZZZZ": "1"})
    assert lines == ["MEMPOOL_ZZZZZZZZ is not a mempool setting (the known ones: "
                     "python -m mempool run --help, or the README's Settings)"]
    assert _settings.unknown_variables({"MEMPOOL_FT_JOBS": "2",        # a build script's
                                        "MEMPOOL_ARROW_CACHE": "/x"}) == []


# ----------------------------------------------------------------- Pool --

def test_capacity_below_the_minimum_says_the_minimum():
    with pytest.raises(InvalidArgument) as info:
        Pool(capacity=1 << 20)
    assert str(info.value).startswith(
        "capacity = 1048576 bytes (1 MiB) is out of range: at least 2097152 bytes (2 MiB)")
    assert "[MP_EINVAL]" not in str(info.value) and "config {" not in str(info.value)


def test_unknown_keyword_names_the_nearest():
    with pytest.raises(TypeError, match=r"decy=1 \(did you mean 'decay'\?\)"):
        Pool(decy=1)


def test_pool_takes_no_unknown_attribute(pool):
    with pytest.raises(AttributeError, match=r"'resident_limt' \(did you mean 'resident_limit'"):
        pool.resident_limt = 5
    with pytest.raises(AttributeError, match="'foo'"):
        pool.foo = 1
    with pytest.raises(AttributeError, match="capacity is fixed when the pool is made"):
        pool.capacity = 1 << 30
    with pytest.raises(AttributeError, match="mesh is fixed"):
        pool.mesh = True


def test_settings_change_at_run_time(pool):
    pool.decay = 5                                   # did nothing once
    assert pool.decay == 5.0 and pool.config["decay"] == 5.0
    pool.decay = "250ms"
    assert pool.decay == 0.25
    pool.decay = math.inf
    assert pool.decay == math.inf
    pool.background_purge = False
    assert pool.config["background_purge"] is False
    pool.retain_arenas = 3
    assert pool.retain_arenas == 3
    pool.resident_limit = "1GiB"
    assert pool.resident_limit == 1 << 30
    pool.resident_limit = None
    assert pool.resident_limit is None
    with pytest.raises(ValueError, match="decay=-1: expected seconds >= 0"):
        pool.decay = -1
    assert pool.decay == math.inf                    # nothing changed


def test_decay_zero_at_run_time_gives_pages_back(pool):
    pool.decay = math.inf
    a = pool.empty(16 * MiB, np.uint8)
    a[::4096] = 1
    del a
    assert pool.stats().dirty_free_bytes >= 16 * MiB
    pool.decay = 0
    assert pool.stats().dirty_free_bytes == 0


def test_runtime_change_of_the_installed_pool_reaches_new_processes(pool):
    mempool.install(pool)
    try:
        pool.decay = 7
        assert os.environ["MEMPOOL_DECAY"] == "7.0"
    finally:
        mempool.uninstall()


# ----------------------------------------------------------- error types --

def test_a_request_no_pool_can_hold_is_a_memory_error(pool):
    with pytest.raises(MemoryError):
        np.empty((1 << 62,), np.uint8)               # what numpy raises
    with pytest.raises(PoolExhausted, match="larger than any block a pool can hold") as info:
        pool.empty((1 << 62,), np.uint8)             # was SizeMismatch, a ValueError
    assert not isinstance(info.value, ValueError) and info.value.pool is pool


def test_capacity_hit_inside_use_names_the_pool():
    small = Pool(capacity="8MiB")
    with pytest.raises(PoolExhausted) as info:
        with mempool.use(small):
            np.ones(2 * MiB)                          # 16 MiB
    exc = info.value
    assert isinstance(exc, MemoryError) and exc.pool is small
    assert exc.capacity == 8 * MiB and exc.requested == 16 * MiB
    assert "inside mempool.use()" in str(exc)
    assert isinstance(exc.__cause__, MemoryError)     # numpy's own, chained
    with mempool.use(small):                          # caught inside: numpy's, untouched
        try:
            np.ones(2 * MiB)
        except MemoryError as inner:
            assert not isinstance(inner, PoolExhausted)


def test_other_memory_errors_pass_through_use(pool):
    with pytest.raises(MemoryError) as info:
        with mempool.use(pool):
            raise MemoryError("not the pool's")
    assert not isinstance(info.value, PoolExhausted)


# ---------------------------------------------------------------- pool_of --

def test_pool_of(pool):
    a = pool.zeros((64, 64))
    assert mempool.pool_of(a) is pool
    assert mempool.pool_of(a[3:, ::2].T) is pool
    assert mempool.pool_of(np.zeros(10)) is None
    assert mempool.pool_of(np.zeros(10)[2:]) is None
    other = Pool()
    with mempool.use(other):
        b = np.arange(1000) * 2
    assert mempool.pool_of(b) is other
    buf = pool.buffer(1 << 16)
    view = buf.array((16, 16))
    assert mempool.pool_of(view[1:]) is pool
    del view
    buf.free()
    with pytest.raises(TypeError):
        _core.array_pool([1, 2])
