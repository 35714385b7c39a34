"""Comments and docs point at files that exist: every repository path they
name (``csrc/heap/heap.c``, ``benches/traces/``...), and every bare C file
name in the C sources, the Cython glue and the docs (``heap.c``), is there.
Placeholders (``NAME.trace``, ``test_X.c``) and build outputs (``bin/``)
are not paths."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ("csrc", "mempool", "tests", "benches", "docs", "scripts", "build_support", ".ci")
ROOTED = re.compile(r"(?<![\w./-])((?:%s)/[\w./{},*-]*[\w}])"
                    % "|".join(re.escape(r) for r in ROOTS))
BARE_C = re.compile(r"(?<![\w./-])([a-z_][\w-]*\.[ch])\b")
SOURCES = ("csrc/*/*.[ch]", "tests/c/*.[ch]", "tests/fuzz/*.c", "tests/fuzz/*.sh",
           "mempool/**/*.py", "mempool/**/*.pyx", "mempool/**/*.pxd", "mempool/**/*.pxi",
           "mempool/**/*.pyi", "docs/*.md", "README.md", "Makefile", "setup.py",
           "pyproject.toml", "scripts/*.py", "benches/**/*.py", "benches/c/*.[ch]",
           "benches/c/*.sh", ".ci/run", "tests/*.py", "build_support/*.py")
# where a bare "name.c" means a file of this repository
BARE_IN = (".c", ".h", ".pyx", ".pxd", ".pxi", ".md")


def _expand(path: str):
    """The paths a shell brace names (``adapter.{h,cpp}``); globs are left
    out (``traces/*.trace``: what exists is whatever matches)."""
    if "*" in path:
        return []
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(",")
            for q in _expand(path[:m.start()] + alt + path[m.end():])]


def _placeholder_or_output(path: str) -> bool:
    parts = path.split("/")
    return (any(re.search(r"(^|_)[A-Z]+(\.|$)", p) for p in parts) or "bin" in parts
            or (parts[0] == "mempool" and len(parts) == 2 and "." not in parts[1]))


def missing_paths(root: Path = ROOT):
    """``file:line: path`` for each path named in a comment or doc that does
    not exist."""
    names = {p.name for p in root.rglob("*") if ".git" not in p.parts}
    files = {p for pattern in SOURCES for p in root.glob(pattern) if p.is_file()}
    files.discard(root / "tests" / Path(__file__).name)  # its examples are not paths
    bad = []
    for f in sorted(files):
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if line.lstrip().startswith("#include") or "cimport" in line:
                continue
            for m in ROOTED.findall(line):
                for path in _expand(m.rstrip(".")):
                    if not _placeholder_or_output(path) and not (root / path).exists():
                        bad.append(f"{f.relative_to(root)}:{i}: {path}")
            if f.suffix in BARE_IN or f.name == "Makefile":
                bad += [f"{f.relative_to(root)}:{i}: {m}" for m in BARE_C.findall(line)
                        if m not in names and not _placeholder_or_output(m)]
    return bad


def test_comments_and_docs_name_files_that_exist():
    bad = missing_paths()
    assert not bad, "named but missing:\n" + "\n".join(bad)


def test_a_stale_path_is_caught(tmp_path):
    (tmp_path / "csrc" / "heap").mkdir(parents=True)
    gone = "csrc/heap/gone.c"
    (tmp_path / "csrc" / "heap" / "heap.c").write_text(
        f"/* see {gone} and tlsf.c; csrc/heap/heap.c is here, csrc/heap/heap.{{c,x}} "
        "half; csrc/*/*.c a glob */\n")
    assert missing_paths(tmp_path) == [f"csrc/heap/heap.c:1: {gone}",
                                       "csrc/heap/heap.c:1: csrc/heap/heap.x",
                                       "csrc/heap/heap.c:1: tlsf.c"]
