"""Start-up install (MEMPOOL_INSTALL=1 through mempool-startup.pth), the
variables install()/uninstall() hand to child processes, run -m / run -c."""
import math
import os
import site
import subprocess
import sys
import textwrap

import pytest

import mempool
from mempool import _startup
from mempool._units import parse_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shipped_pth_is_current():
    """Whether this interpreter's site-packages holds the start-up .pth that
    `pip install .` / `pip install -e .` ships, with the current line (the
    README's setup: every interpreter started here then runs it)."""
    for d in site.getsitepackages():
        path = os.path.join(d, _startup.PTH_NAME)
        if os.path.exists(path):
            with open(path) as f:
                return f.read() == _startup.pth_text()
    return False


def make_startup_env(tmp_path):
    """An environment whose interpreters run the shipped .pth line at start,
    with PYTHONPATH putting this tree's mempool first and no MEMPOOL_*
    variable inherited.  The .pth is the one pip installed into this
    interpreter's site-packages when it is current (so a venv, where user
    site directories are off, runs these tests too); otherwise a copy in a
    user site directory (PYTHONUSERBASE)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPOOL_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if _shipped_pth_is_current():
        return env
    probe = subprocess.run([sys.executable, "-c", "import site; print(site.ENABLE_USER_SITE)"],
                           capture_output=True, text=True, timeout=60)
    if probe.stdout.strip() != "True":
        pytest.skip("mempool is not pip-installed here and user site directories are "
                    "disabled (a venv), so no start-up .pth can be placed")
    env["PYTHONUSERBASE"] = str(tmp_path / "userbase")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    usersite = subprocess.run([sys.executable, "-c", "import site; print(site.getusersitepackages())"],
                              capture_output=True, text=True, env=env, timeout=60).stdout.strip()
    os.makedirs(usersite)
    with open(os.path.join(usersite, _startup.PTH_NAME), "w") as f:
        f.write(_startup.pth_text())
    return env


@pytest.fixture
def startup_env(tmp_path):
    """make_startup_env() for one test."""
    return make_startup_env(tmp_path)


def _python(env, code, *args, timeout=120, **extra):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**env, **extra})


PROBE = """
    import sys
    print("imported", "mempool" in sys.modules)
    import asyncio, threading, concurrent.futures
    from numpy._core.multiarray import get_handler_name as name
    seen = {"main": name()}
    t = threading.Thread(target=lambda: seen.__setitem__("thread", name()))
    t.start(); t.join()
    async def main():
        seen["task"] = name()
        loop = asyncio.get_running_loop()
        seen["executor"] = await loop.run_in_executor(None, name)
    asyncio.run(main())
    print(sorted(seen.items()))
"""


def test_mempool_install_1_installs_before_the_program_runs(startup_env):
    res = _python(startup_env, PROBE, MEMPOOL_INSTALL="1")
    assert res.returncode == 0, res.stderr
    assert "imported True" in res.stdout
    assert ("[('executor', 'mempool'), ('main', 'mempool'), ('task', 'mempool'), "
            "('thread', 'mempool')]") in res.stdout, res.stdout


@pytest.mark.parametrize("value", [None, "", "0"])
def test_unset_costs_nothing(startup_env, value):
    extra = {} if value is None else {"MEMPOOL_INSTALL": value}
    res = _python(startup_env, """
        import sys
        print(sorted(m for m in sys.modules if m.startswith(("mempool", "numpy"))))
        print([type(f).__name__ for f in sys.meta_path])
    """, **extra)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "[]"
    assert "MempoolStartupFinder" not in res.stdout


def test_settings_reach_the_start_up_pool(startup_env):
    res = _python(startup_env, """
        import mempool
        cfg = mempool.installed().config
        print(cfg["capacity"], cfg["decay"], cfg["huge_pages"], cfg["background_purge"],
              cfg["retain_arenas"], cfg["debug"])
    """, MEMPOOL_INSTALL="1", MEMPOOL_CAPACITY="512MiB", MEMPOOL_DECAY="inf",
        MEMPOOL_HUGE_PAGES="off", MEMPOOL_BACKGROUND_PURGE="no",
        MEMPOOL_RETAIN_ARENAS="2", MEMPOOL_DEBUG="0")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(512 << 20), "inf", "off", "False", "2", "False"]


def test_default_pool_is_the_start_up_pool(startup_env):
    res = _python(startup_env, """
        import mempool, numpy as np
        a = np.ones(1000)
        print(mempool.default_pool() is mempool.installed(), mempool.pool_of(a) is
              mempool.default_pool(), mempool.default_pool().stats().live_bytes >= a.nbytes)
    """, MEMPOOL_INSTALL="1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True", "True"]    # was a second, empty pool


def test_unknown_variable_warns_at_start_up(startup_env):
    res = _python(startup_env, "import mempool; print(mempool.installed().decay)",
                  MEMPOOL_INSTALL="1", MEMPOOL_DECY="5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1.0"]
    assert "MEMPOOL_DECY is not a mempool setting; did you mean MEMPOOL_DECAY?" in res.stderr


@pytest.mark.parametrize("var, value", [
    # "0" was refused too; it is now "unlimited", as the core's table says
    ("MEMPOOL_CAPACITY", "12x"), ("MEMPOOL_CAPACITY", "-5"), ("MEMPOOL_CAPACITY", "1M"),
    ("MEMPOOL_DECAY", "abc"), ("MEMPOOL_RESIDENT_LIMIT", "1k"),
    ("MEMPOOL_SMALL_MAX", "1MiB"), ("MEMPOOL_DECAY", "soon"), ("MEMPOOL_DECAY", "-1"),
    ("MEMPOOL_HUGE_PAGES", "maybe"), ("MEMPOOL_BACKGROUND_PURGE", "2"),
    ("MEMPOOL_RETAIN_ARENAS", "1.5"), ("MEMPOOL_DEBUG", "sure"), ("MEMPOOL_INSTALL", "yes please"),
])
def test_bad_setting_names_the_value_and_installs_nothing(startup_env, var, value):
    env = {"MEMPOOL_INSTALL": "1", var: value}
    res = _python(startup_env, """
        import sys
        from numpy._core.multiarray import get_handler_name
        import mempool
        print(get_handler_name(), mempool.installed())
    """, **env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["default_allocator", "None"]
    assert "mempool: not installed at start-up" in res.stderr
    assert f"{var}={value!r}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


CHILDREN = """
    import multiprocessing as mp, subprocess, sys, os
    import mempool
    from numpy._core.multiarray import get_handler_name

    def child(q):
        import mempool
        q.put((get_handler_name(), mempool.installed() and mempool.installed().capacity))

    def spawn(method):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start(); out = q.get(timeout=60); p.join(60)
        return out

    def sub():
        return subprocess.run([sys.executable, "-c", "from numpy._core.multiarray "
                               "import get_handler_name as g; print(g())"],
                              capture_output=True, text=True, timeout=60).stdout.strip()

    if __name__ == "__main__":
        mempool.install(mempool.Pool(capacity=1 << 30))
        print("installed", os.environ["MEMPOOL_INSTALL"], os.environ["MEMPOOL_CAPACITY"])
        print("spawn", *spawn("spawn"))
        print("forkserver", *spawn("forkserver"))
        print("subprocess", sub())
        mempool.uninstall()
        print("after", os.environ.get("MEMPOOL_INSTALL"), os.environ.get("MEMPOOL_CAPACITY"))
        print("spawn-after", *spawn("spawn"))
        print("subprocess-after", sub())
"""


def test_install_reaches_spawned_children_and_uninstall_stops_it(startup_env, tmp_path):
    script = tmp_path / "children.py"
    script.write_text(textwrap.dedent(CHILDREN))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240, env=startup_env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines == [
        f"installed 1 {1 << 30}",
        f"spawn mempool {1 << 30}",
        f"forkserver mempool {1 << 30}",
        "subprocess mempool",
        "after None None",
        "spawn-after default_allocator None",
        "subprocess-after default_allocator",
    ], res.stdout + res.stderr


def test_install_exports_and_uninstall_restores_the_environment(pool, monkeypatch):
    monkeypatch.delenv("MEMPOOL_INSTALL", raising=False)
    monkeypatch.setenv("MEMPOOL_CAPACITY", "999")
    monkeypatch.delenv("MEMPOOL_DECAY", raising=False)
    mempool.install(pool)
    try:
        assert os.environ["MEMPOOL_INSTALL"] == "1"
        assert "MEMPOOL_CAPACITY" not in os.environ     # unlimited: not the stale 999
        rebuilt = _startup.settings_from_environ()
        assert rebuilt == {k: v for k, v in _startup.pool_settings(pool).items()
                           if v is not None}
    finally:
        mempool.uninstall()
    assert "MEMPOOL_INSTALL" not in os.environ
    assert os.environ["MEMPOOL_CAPACITY"] == "999"      # put back as it was
    assert "MEMPOOL_DECAY" not in os.environ


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("512MiB", 512 << 20), ("1.5G", 3 << 29), ("64k", 65536),
    (" 2 GiB ", 2 << 30), ("1_000", 1000),
])
def test_parse_bytes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12x", "-1", "nan", "inf", "0x10", "1.5"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="expected a"):
        parse_size(text)


def test_environ_round_trip_and_unknown_setting():
    settings = {"capacity": 1 << 30, "decay": math.inf, "huge_pages": "on", "debug": True}
    env = _startup.environ_from_settings(settings)
    assert env == {"MEMPOOL_CAPACITY": str(1 << 30), "MEMPOOL_DECAY": "inf",
                   "MEMPOOL_HUGE_PAGES": "on", "MEMPOOL_DEBUG": "1"}
    assert _startup.settings_from_environ(env) == settings
    with pytest.raises(TypeError, match="capacty=5"):
        _startup.environ_from_settings({"capacty": 5})


def test_installed_package_ships_the_same_pth_line():
    """Where mempool is pip-installed (CI: pip install -e .), the .pth the
    build hook wrote must be the current line."""
    dirs = site.getsitepackages() + [site.getusersitepackages()]
    found = [os.path.join(d, _startup.PTH_NAME) for d in dirs
             if os.path.exists(os.path.join(d, _startup.PTH_NAME))]
    if not found:
        pytest.skip("mempool is not pip-installed in this interpreter")
    for path in found:
        with open(path) as f:
            assert f.read() == _startup.pth_text(), path


# ------------------------------------------------------------- run -m / -c --

def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "mempool", "run", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_run_module(startup_env, tmp_path):
    pkg = tmp_path / "mymod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(textwrap.dedent("""
        import sys, threading, numpy as np
        from numpy._core.multiarray import get_handler_name as g
        a = np.ones(1 << 20)
        seen = []
        t = threading.Thread(target=lambda: seen.append(g())); t.start(); t.join()
        print("handler", g(a), seen[0], __name__, sys.argv[1:])
        sys.exit(int(sys.argv[1]))
    """))
    env = {**startup_env, "PYTHONPATH": str(tmp_path) + os.pathsep + startup_env["PYTHONPATH"]}
    res = _run(env, "-m", "mymod", "4", "--help")
    assert res.returncode == 4, res.stderr
    assert "handler mempool mempool __main__ ['4', '--help']" in res.stdout
    assert "mempool report for -m mymod" in res.stderr
    assert "peak live 8.0 MiB" in res.stderr


def test_run_code(startup_env):
    res = _run(startup_env, "--capacity", str(1 << 30), "-c",
               "import sys, numpy as np; from numpy._core.multiarray import get_handler_name as g;"
               "a = np.ones(1 << 20); print(g(a), sys.argv, __name__)", "x", "-v")
    assert res.returncode == 0, res.stderr
    assert "mempool ['-c', 'x', '-v'] __main__" in res.stdout
    assert "mempool report for -c <code>" in res.stderr


def test_run_errors(startup_env):
    res = _run(startup_env, "-m", "no_such_module_here")
    assert res.returncode == 1 and "no module named 'no_such_module_here'" in res.stderr
    res = _run(startup_env, "-c")
    assert res.returncode == 2 and "-c needs a value" in res.stderr
    res = _run(startup_env, "-c", "raise SystemExit('boom')")
    assert res.returncode == 1 and "boom" in res.stderr
