"""python -m mempool: run, demo/bench dispatch, help."""
import os
import subprocess
import sys
import textwrap
import types

import pytest

from mempool import cli

SCRIPT = textwrap.dedent("""
    import sys
    import threading
    import numpy as np
    from numpy._core.multiarray import get_handler_name

    arrays = [np.ones(1 << 20) for _ in range(8)]
    total = sum(float(a.sum()) for a in arrays)
    seen = []
    t = threading.Thread(target=lambda: seen.append(get_handler_name()))
    t.start(); t.join()
    print("handler", get_handler_name(), "thread", seen[0])
    print("args", sys.argv[1:], "name", __name__, "total", int(total))
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mempool", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(SCRIPT)
    return path


def test_run_executes_the_script_with_the_pool_and_reports(script):
    res = _run("run", str(script), "0", "--flag")
    assert res.returncode == 0, res.stderr
    assert "handler mempool thread mempool" in res.stdout
    assert "args ['0', '--flag'] name __main__ total 8388608" in res.stdout
    report = res.stderr
    assert f"mempool report for {script}" in report
    assert "peak live 64.0 MiB" in report
    for word in ("peak resident", "peak RSS", "page faults", "alloc ", "free "):
        assert word in report, report


def test_run_passes_the_exit_status_and_still_reports(script):
    res = _run("run", str(script), "3")
    assert res.returncode == 3
    assert "mempool report" in res.stderr


def test_run_missing_script():
    res = _run("run", "/nonexistent/script.py")
    assert res.returncode == 2
    assert res.stderr == "mempool run: no such file: /nonexistent/script.py\n"


def test_help_lists_the_subcommands():
    res = _run("--help")
    assert res.returncode == 0
    for name in ("run", "demo", "bench", "replay", "stress"):
        assert name in res.stdout


def test_no_command_prints_help():
    res = _run()
    assert res.returncode == 2
    assert "run" in res.stdout


@pytest.mark.parametrize("name", ["demo", "bench", "replay", "stress"])
def test_delegates_argv_to_the_module(monkeypatch, name):
    seen = []
    module = types.ModuleType(f"mempool.tools.{name}")
    module.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, f"mempool.tools.{name}", module)
    assert cli.main([name, "--steps", "3", "--help"]) == 7
    assert seen == [["--steps", "3", "--help"]]


@pytest.mark.parametrize("name", ["demo", "bench"])
def test_missing_module_is_a_clear_error(monkeypatch, capsys, name):
    monkeypatch.setitem(sys.modules, f"mempool.tools.{name}", None)
    assert cli.main([name]) == 2
    assert f"mempool.tools.{name} is not available" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["demo", "bench", "replay", "stress"])
@pytest.mark.parametrize("missing", ["rich", "matplotlib", "psutil"])
def test_tools_without_the_demo_extra_say_what_to_install(monkeypatch, capsys, name,
                                                          missing):
    # A None entry in sys.modules is how a module that cannot be found looks
    # to importlib (find_spec returns None), as without the extra installed.
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, f"mempool.tools.{name}", raising=False)
    assert cli.main([name, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mempool[demo]'" in err and f"missing: {missing}" in err
    assert err.count("\n") == 1
    # --help works (it was exit 2): what the tool does and what to install
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m mempool {name}")
    assert "pip install 'mempool[demo]'" in out and f"missing: {missing}" in out
    assert f"mempool.tools.{name}" not in sys.modules  # stopped before importing it


def test_tool_without_the_extra_in_a_fresh_process():
    blocker = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('rich', 'matplotlib', 'psutil'):\n"
               "            raise ModuleNotFoundError(name, name=name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "import runpy\n"
               "sys.argv = ['mempool', 'demo']\n"
               "runpy.run_module('mempool', run_name='__main__', alter_sys=True)\n")
    res = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2, res.stderr
    assert "pip install 'mempool[demo]'" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_report_in_process(script, capsys):
    import io
    out = io.StringIO()
    status = cli.run_script(str(script), ["5"], out=out)
    assert status == 5
    text = out.getvalue()
    assert "peak live" in text and "errors   none" in text
    assert "handler mempool" in capsys.readouterr().out


# ------------------------------------------------ exit codes and messages --

def test_version():
    import mempool
    res = _run("--version")
    assert res.returncode == 0 and res.stdout == f"mempool {mempool.__version__}\n"


@pytest.mark.parametrize("args, message", [
    (["run"], "mempool run: nothing to run: give SCRIPT, -m MODULE or -c CODE"),
    (["run", "--capacity", "-5", "-c", "pass"], "mempool run: --capacity='-5': expected a"),
    (["run", "--capacity", "1M", "-c", "pass"],
     "mempool run: --capacity='1M': capacity = 1048576 bytes (1 MiB) is out of range: "
     "at least 2097152 bytes (2 MiB)"),
    (["run", "--decay", "soon", "-c", "pass"], "mempool run: --decay='soon': expected a duration"),
    (["run", "--huge-pages", "maybe", "-c", "pass"], "expected one of 'off', 'on', 'auto'"),
    (["run", "--capacit", "5", "-c", "pass"],
     "mempool run: unknown option --capacit (did you mean --capacity?)"),
    (["run", "--capacity"], "argument --capacity"),
    (["run", "/tmp"], "mempool run: /tmp is a directory without a __main__.py"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_cli_errors_are_one_line_and_exit_2(args, message):
    res = _run(*args)
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_run_shows_only_the_programs_traceback(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\ndef f():\n    raise ValueError('boom')\nf()\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=60)
    res = _run("run", "--no-report", str(script))
    assert res.returncode == plain.returncode == 1
    assert res.stderr == plain.stderr            # 7 lines, not 25 of runpy and run
    res = _run("run", "--no-report", "-c", "import sys; sys.exit(3)")
    assert res.returncode == 3 and res.stderr == ""
    res = _run("run", "-c", "raise KeyError('k')")
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[:3] == ["Traceback (most recent call last):",
                         '  File "<string>", line 1, in <module>', "KeyError: 'k'"]
    assert lines[3].startswith("mempool report for -c <code>")   # the report still comes


def test_run_directory_with_main_as_python_does(tmp_path):
    (tmp_path / "__main__.py").write_text("import sys; print('main of', sys.argv)")
    res = _run("run", "--no-report", str(tmp_path), "x")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"main of [{str(tmp_path)!r}, 'x']\n"


def test_run_help_lists_a_flag_per_setting():
    from mempool import _settings
    res = _run("run", "--help")
    assert res.returncode == 0
    for s in _settings.SETTINGS.values():
        assert s.flag in res.stdout and s.env in res.stdout
    assert "--decay DURATION" in res.stdout and "--resident-limit SIZE|auto" in res.stdout


def test_run_flags_and_variables_reach_the_pool_and_the_children():
    code = ("import mempool, os, subprocess, sys; p = mempool.installed(); "
            "print(p is mempool.default_pool(), p.capacity, p.decay, p.resident_limit, p.mesh); "
            "print(subprocess.run([sys.executable, '-c', 'import mempool; q = mempool.installed(); "
            "print(q.decay, q.resident_limit, q.capacity)'], capture_output=True, "
            "text=True).stdout.strip())")
    env = {**os.environ, "MEMPOOL_DECAY": "5", "MEMPOOL_RESIDENT_LIMIT": "256MiB",
           "MEMPOOL_CAPACITY": "1GiB"}
    res = subprocess.run([sys.executable, "-m", "mempool", "run", "--no-report",
                          "--capacity", "2GiB", "--mesh", "-c", code],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"True {2 << 30} 5.0 {256 << 20} True",     # flag over variable; variables kept
        f"5.0 {256 << 20} {2 << 30}"]                 # children get the same settings


def test_run_refuses_a_malformed_variable():
    env = {**os.environ, "MEMPOOL_DECAY": "abc"}
    res = subprocess.run([sys.executable, "-m", "mempool", "run", "-c", "print('ran')"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("mempool run: MEMPOOL_DECAY='abc': expected a duration such as "
                          "'1.5s', '250ms', a number of seconds, or 'inf'\n")


def test_run_warns_about_an_unknown_variable():
    env = {**os.environ, "MEMPOOL_DECY": "5"}
    res = subprocess.run([sys.executable, "-m", "mempool", "run", "--no-report", "-c",
                          "print('ran')"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and res.stdout == "ran\n"
    assert "MEMPOOL_DECY is not a mempool setting; did you mean MEMPOOL_DECAY?" in res.stderr


def test_run_names_the_pool_when_it_refuses():
    res = _run("run", "--no-report", "--capacity", "8MiB", "-c",
               "import numpy as np; a = np.ones(3 << 20)")
    assert res.returncode == 1
    assert "MemoryError: Unable to allocate 24.0 MiB" in res.stderr
    assert ("mempool: pool capacity exhausted: requested 24.0 MiB (25165824 bytes), "
            "capacity 8.0 MiB (8388608 bytes)") in res.stderr
