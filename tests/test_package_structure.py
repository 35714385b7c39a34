"""The package's shape: no import cycle between mempool modules, and the
runtime package imports none of the tools' dependencies."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

import mempool

PACKAGE = Path(mempool.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _extensions() -> Dict[str, str]:
    """Cython module -> its Python-level source (the .pyx and the .pxi it
    includes), whose ``import``/``from ... import`` lines are Python syntax."""
    out = {}
    for pyx in PACKAGE.rglob("*.pyx"):
        text = pyx.read_text()
        for inc in re.findall(r'^include "([^"]+)"', text, re.M):
            text += "\n" + (pyx.parent / inc).read_text()
        out[_module_name(pyx)] = text
    return out


def _python_imports(source: str) -> List[ast.stmt]:
    # cimport lines are compile-time (.pxd), not module imports
    lines = [line for line in source.splitlines()
             if re.match(r"\s*(from\s+\S+\s+import\s|import\s)", line)
             and "cimport" not in line and not line.rstrip().endswith(("(", "\\"))]
    return ast.parse("\n".join(line.strip() for line in lines)).body


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> Dict[str, Set[str]]:
    """module -> the mempool modules it imports, anywhere in its body
    (function-level imports included).  ``from a import b`` is an edge to
    ``a.b`` when that is a module, else to ``a``."""
    modules = _modules()
    extensions = _extensions()
    known = set(modules) | set(extensions)
    sources = [(name, path.name == "__init__.py", ast.walk(ast.parse(path.read_text())))
               for name, path in modules.items()]
    sources += [(name, False, _python_imports(text)) for name, text in extensions.items()]
    graph: Dict[str, Set[str]] = {}
    for name, is_package, nodes in sources:
        edges: Set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, is_package)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known
                           else base for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in known and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: Dict[str, int] = {}   # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert graph["mempool._core"] <= {"mempool.errors"}   # the .pyx is read too
    assert "mempool.pool" in graph["mempool"]
    assert "mempool.tools.demo.workloads" in graph["mempool.tools.demo.runner"]  # relative
    assert "mempool.tools.stress" in graph["mempool.tools.replay"]  # inside _child()


def test_no_import_cycle_between_mempool_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_runtime_package_imports_no_tool_dependency():
    code = ("import sys, mempool, numpy as np\n"
            "with mempool.use():\n"
            "    np.ones(1000)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rich', 'matplotlib', 'psutil') or m.startswith('mempool.tools')))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_import_mempool_leaves_the_trace_and_stats_modules_for_first_use():
    code = ("import sys, mempool\n"
            "before = sorted(m for m in ('mempool.trace', 'mempool.stats') if m in sys.modules)\n"
            "mempool.trace.record, mempool.PoolStats\n"
            "after = sorted(m for m in ('mempool.trace', 'mempool.stats') if m in sys.modules)\n"
            "print(before, after)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[] ['mempool.stats', 'mempool.trace']"


def test_test_hooks_are_out_of_the_pool_and_share_its_core():
    from mempool import _testhooks as hooks
    assert not [name for name in dir(mempool.Pool) if name.startswith("_debug_")]
    pool = mempool.Pool()
    addr = hooks.alloc(pool, 1000)
    # the block is the pool's: the hooks call _core's copy of the core, not one
    # linked into _testhooks (whose chunk map would not know this pool)
    assert hooks.owns(pool, addr) and pool.stats().live_bytes >= 1000
    hooks.free(pool, addr)
    assert pool.stats().live_bytes == 0
    pool.close()


def _symbols(path: str, *flags: str) -> Set[str]:
    """Symbol names of a shared object: its full table (local symbols too,
    unless stripped) and its dynamic one."""
    names: Set[str] = set()
    for table in ([], ["-D"]):
        out = subprocess.run(["nm", *table, *flags, path], capture_output=True,
                             text=True, timeout=60).stdout
        names.update(line.split()[-1] for line in out.splitlines() if line.strip())
    return names


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_the_runtime_extension_holds_no_tool_code():
    from mempool import _core
    from mempool.tools import _replay
    core, tools = _symbols(_core.__file__), _symbols(_replay.__file__)
    # the check can fail: the engine's symbols are there to be found, in the
    # tools' extension
    assert {"mp_replay_run", "mp_replay_create"} <= tools
    assert not sorted(name for name in core if "replay" in name.lower())
    assert not hasattr(_core, "ReplayState")
    # the recorder is the runtime's (mempool.trace.record), and so is the RSS read
    assert {"mp_trace_note_alloc", "mp_process_rss"} <= core
    # the tools' extension carries no copy of the core: it calls _core's
    defined = _symbols(_replay.__file__, "--defined-only")
    assert not {"mp_alloc", "mp_free", "mp_pool_create", "mp_stats_get"} & defined
