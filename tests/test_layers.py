"""The C core's layering (scripts/check_layers.py): the real tree passes, and
a tree with each kind of violation is caught, so the check can fail."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_layers.py"


def run(root, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("cc") is None or shutil.which("nm") is None,
                    reason="needs a C compiler and nm for the symbol check")
def test_the_core_keeps_its_layers():
    proc = run(ROOT)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "csrc", tmp_path / "csrc")
    return tmp_path


def test_an_upward_include_is_caught(tree):
    heap_c = tree / "csrc" / "heap" / "heap.c"
    heap_c.write_text('#include "../pool/pool.h"\n' + heap_c.read_text())
    proc = run(tree, "--no-symbols")
    assert proc.returncode == 1
    assert "heap/heap.c: includes '../pool/pool.h', which is not below heap/" in proc.stderr


def test_a_private_header_of_a_lower_layer_is_caught(tree):
    (tree / "csrc" / "map" / "secret.h").write_text("#define X 1\n")
    slab = tree / "csrc" / "small" / "slab.c"
    slab.write_text('#include "../map/secret.h"\n' + slab.read_text())
    proc = run(tree, "--no-symbols")
    assert proc.returncode == 1 and "map/ exposes only map/map.h" in proc.stderr


@pytest.mark.parametrize("path", ["tools/replay.c", "trace/trace.c"])
def test_the_folders_beside_the_core_may_not_reach_into_it(tree, path):
    src = tree / "csrc" / path
    src.write_text('#include "../base/base.h"\n' + src.read_text())
    proc = run(tree, "--no-symbols")
    assert proc.returncode == 1 and "and the core meet only" in proc.stderr


def test_the_core_may_not_include_the_recorder(tree):
    pool_c = tree / "csrc" / "pool" / "pool.c"
    pool_c.write_text('#include "../trace/trace.h"\n' + pool_c.read_text())
    proc = run(tree, "--no-symbols")
    assert proc.returncode == 1 and "pool/pool.c: includes '../trace/trace.h'" in proc.stderr


def test_a_long_file_is_caught(tree):
    os_c = tree / "csrc" / "base" / "os.c"
    os_c.write_text(os_c.read_text() + "\n" * 700)
    proc = run(tree, "--no-symbols")
    assert proc.returncode == 1 and "base/os.c:" in proc.stderr and "limit 600" in proc.stderr


@pytest.mark.skipif(shutil.which("cc") is None or shutil.which("nm") is None,
                    reason="needs a C compiler and nm for the symbol check")
def test_a_symbol_without_its_file_prefix_is_caught(tree):
    bits = tree / "csrc" / "base" / "bits.c"
    bits.write_text(bits.read_text() + "\nint stray_counter;\n")
    proc = run(tree)
    assert proc.returncode == 1 and "'stray_counter'" in proc.stderr


def _make_list(name):
    """The words of a Makefile variable, continuation lines joined."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.split(":=")[0].strip() == name)
    return line.split(":=", 1)[1].split()


def test_one_c_test_per_module_and_every_test_run():
    # tests/c/test_X.c tests the core's module X (csrc/*/X.c, or a layer
    # folder's small files together), or is one of the whole-core scenarios;
    # and `make test-c` runs every one of them.
    modules = {p.stem for p in (ROOT / "csrc").glob("*/*.c")}
    layers = {p.name for p in (ROOT / "csrc").iterdir() if p.is_dir()}
    units, whole = _make_list("UNIT_TESTS"), _make_list("WHOLE_TESTS")
    files = sorted(p.stem for p in (ROOT / "tests" / "c").glob("test_*.c"))
    assert sorted(units + whole) == files, "make test-c and tests/c/ disagree"
    for name in units:
        assert name[len("test_"):] in modules | layers, f"{name}.c names no module"
    assert len(whole) <= 3
