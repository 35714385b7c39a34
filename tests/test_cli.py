"""python -m mempool: run, demo/bench dispatch, help."""
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
    assert "no such script" in res.stderr


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
    assert cli.main([name, "--help"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mempool[demo]'" in err and f"missing: {missing}" in err
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
