#!/usr/bin/env python3
"""Check the C core's layering (docs/ARCHITECTURE.md); exit 1 on a violation.

Rules, each printed with the offending file when broken:

1. Includes go only downward.  csrc/ holds one folder per layer, bottom up:
   base, map, heap, small, pool, front.  A file may include headers of its
   own folder and the one header of a lower folder (``../heap/heap.h``), and
   ``include/mempool.h`` (the public header) from anywhere.  ``trace`` (the
   recorder, compiled into the runtime extension) and ``tools`` (the replay
   engine, compiled only into the tools' extension) sit beside the core:
   each may include the public header and its own, and ``tools`` also
   ``trace/trace.h`` (the record format); the core includes neither.
2. Each folder exposes one header, named after it (``heap/heap.h``).
3. File = prefix: every external symbol of ``X.c`` starts with ``X_``, or is
   public API (``mp_``, declared in include/ or tools/).  Checked on the
   object file (``cc -c`` then ``nm``), so a macro cannot hide a symbol.
4. No C file is over 600 lines.

Usage: scripts/check_layers.py [--root DIR] [--no-symbols]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS = ["base", "map", "heap", "small", "pool", "front"]
# Beside the core: folder -> the headers outside it that it may include.
BESIDE = {"trace": set(), "tools": {"trace/trace.h"}}
PUBLIC = "include/mempool.h"
MAX_LINES = 600
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def rank(folder: str) -> int:
    """Position of a layer folder, bottom = 0."""
    return LAYERS.index(folder)


def check_includes(csrc: Path) -> list[str]:
    """Rules 1 and 2 over every .c and .h under csrc/."""
    errors = []
    for path in sorted(csrc.glob("*/*.[ch]")):
        folder = path.parent.name
        rel = path.relative_to(csrc).as_posix()
        if folder == "include":
            for inc in INCLUDE_RE.findall(path.read_text()):
                errors.append(f"{rel}: the public header includes {inc!r}")
            continue
        if folder not in LAYERS and folder not in BESIDE:
            errors.append(f"{rel}: folder {folder!r} is not a known layer")
            continue
        for inc in INCLUDE_RE.findall(path.read_text()):
            target = os.path.normpath(os.path.join(folder, inc)).replace(os.sep, "/")
            tfolder, _, tname = target.partition("/")
            if target == PUBLIC or tfolder == folder:
                continue
            if folder in BESIDE and target in BESIDE[folder]:
                continue
            if folder in BESIDE or tfolder in BESIDE:
                errors.append(f"{rel}: includes {inc!r}; the folders beside the core "
                              f"({', '.join(sorted(BESIDE))}) and the core meet only "
                              f"in {PUBLIC}")
            elif tfolder not in LAYERS:
                errors.append(f"{rel}: includes {inc!r}, outside every layer")
            elif rank(tfolder) >= rank(folder):
                errors.append(f"{rel}: includes {inc!r}, which is not below {folder}/ "
                              f"(layers bottom up: {' < '.join(LAYERS)})")
            elif tname != f"{tfolder}.h":
                errors.append(f"{rel}: includes {inc!r}; {tfolder}/ exposes only "
                              f"{tfolder}/{tfolder}.h")
    return errors


def check_lengths(csrc: Path) -> list[str]:
    """Rule 4."""
    errors = []
    for path in sorted(csrc.glob("*/*.c")):
        n = path.read_text().count("\n")
        if n > MAX_LINES:
            errors.append(f"{path.relative_to(csrc)}: {n} lines (limit {MAX_LINES})")
    return errors


def check_symbols(csrc: Path) -> list[str]:
    """Rule 3, on objects compiled into a scratch folder."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None or shutil.which("nm") is None:
        return [f"cannot check symbols: {cc} or nm is missing"]
    errors = []
    # A sanitizer runtime preloaded into this process (the ASan test stage)
    # must not reach the compiler, whose own leaks it would report.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(csrc.glob("*/*.c")):
            obj = Path(tmp) / (path.parent.name + "_" + path.stem + ".o")
            subprocess.run([cc, "-std=c11", "-pthread", "-O1", "-c", str(path), "-o", str(obj)],
                           check=True, env=env)
            out = subprocess.run(["nm", "-g", "--defined-only", str(obj)], check=True,
                                 capture_output=True, text=True, env=env).stdout
            prefix = path.stem + "_"
            for line in out.splitlines():
                name = line.split()[-1]
                if not (name.startswith(prefix) or name.startswith("mp_")):
                    errors.append(f"{path.relative_to(csrc)}: external symbol {name!r} "
                                  f"does not start with {prefix!r} (or mp_ for public API)")
    return errors


def main(argv: list[str] | None = None) -> int:
    """Run every check; print each violation; 0 when there is none."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=Path(__file__).resolve().parent.parent, type=Path)
    ap.add_argument("--no-symbols", action="store_true", help="skip the compile + nm check")
    args = ap.parse_args(argv)
    csrc = args.root / "csrc"
    errors = check_includes(csrc) + check_lengths(csrc)
    if not args.no_symbols:
        errors += check_symbols(csrc)
    for e in errors:
        print(e, file=sys.stderr)
    print(f"layers: {len(errors)} violation(s) in {len(list(csrc.glob('*/*.[ch]')))} files")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
