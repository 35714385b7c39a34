"""Build of the Arrow adapter on first use, against the pyarrow installed.

Why on first use, into a cache, and not with the package or as a wheel of its
own: Arrow's C++ ABI (and pyarrow's Cython types the adapter boxes its pool
in) change with every pyarrow major version, and the pyarrow a user ends up
with is whatever pip picks *after* mempool was built (pip builds in an
isolated environment that has no pyarrow; a separate wheel would have to pin
one pyarrow major).  Built here, the adapter always matches the pyarrow that
imports it; it takes one C++ compile (~20-40 s) the first time a pyarrow
version meets this mempool, and none after.  ``python -m mempool.arrow build``
does it ahead of time (images, clusters, read-only homes with
``MEMPOOL_ARROW_CACHE``).

Needs what building mempool itself needed (a C++ compiler, Python's headers)
plus Cython, which the ``arrow`` extra installs.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import mmap
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

__all__ = ["ArrowAdapterError", "ArrowVersionMismatch", "cache_root", "build_dir",
           "build", "load"]

HERE = Path(__file__).resolve().parent
SOURCES = ("_adapter.pyx", "adapter.h", "adapter.cpp")
CACHE_VAR = "MEMPOOL_ARROW_CACHE"
MODULE = "mempool.arrow._adapter"
INSTALL_HINT = "pip install 'mempool[arrow]'"


class ArrowAdapterError(ImportError):
    """The Arrow adapter cannot be built or loaded here (the message says
    what is missing and what to do)."""


class ArrowVersionMismatch(ArrowAdapterError):
    """The adapter was built for another Arrow than the one loaded."""


def _sanitize() -> bool:
    return os.environ.get("MEMPOOL_SANITIZE", "") not in ("", "0")


def cache_root() -> Path:
    """Where built adapters live: ``$MEMPOOL_ARROW_CACHE``, else
    ``$XDG_CACHE_HOME/mempool/arrow`` (``~/.cache/mempool/arrow``)."""
    explicit = os.environ.get(CACHE_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
    return Path(base).expanduser() / "mempool" / "arrow"


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES + ("include/mempool.h",):
        digest.update(name.encode())
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:12]


def build_dir() -> Path:
    """The directory of the adapter for this pyarrow, Python and mempool
    source (it may not exist yet)."""
    import pyarrow
    tag = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag
    flavour = "-asan" if _sanitize() else ""
    return cache_root() / f"pyarrow-{pyarrow.__version__}-{tag}-{_source_hash()}{flavour}"


def _module_path(directory: Path) -> Path:
    return directory / ("_adapter" + sysconfig.get_config_var("EXT_SUFFIX"))


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    import fcntl
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)   # Dask workers starting together
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compiler() -> List[str]:
    chosen = os.environ.get("CXX", "").split() or (sysconfig.get_config_var("CXX") or "").split()
    for words in (chosen, ["c++"], ["g++"], ["clang++"]):
        if words and shutil.which(words[0]):
            return words
    raise ArrowAdapterError(
        "mempool's Arrow adapter is compiled the first time it is used, and no C++ "
        "compiler was found (tried $CXX, c++, g++, clang++): install one "
        "(apt-get install g++), or build it where one is with "
        "`python -m mempool.arrow build` and point MEMPOOL_ARROW_CACHE at that cache")


def _cxx11_abi(libarrow: Path) -> int:
    """1 when libarrow was built with libstdc++'s C++11 string ABI (its
    symbols carry the ``B5cxx11`` tag), else 0: the adapter must match, since
    backend_name() returns a std::string across the boundary."""
    with open(libarrow, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return int(m.find(b"B5cxx11") >= 0)


def _arrow_libraries() -> List[Path]:
    import pyarrow
    found = []
    for directory in pyarrow.get_library_dirs():
        for name in pyarrow.get_libraries():
            candidates = sorted(Path(directory).glob(f"lib{name}.so*"), key=lambda p: len(p.name))
            if candidates:
                found.append(candidates[0])
    if not any(p.name.startswith("libarrow.so") for p in found):
        raise ArrowAdapterError(f"pyarrow {pyarrow.__version__} ships no libarrow.so in "
                                f"{pyarrow.get_library_dirs()}: reinstall pyarrow ({INSTALL_HINT})")
    return found


def _run(cmd: List[str], cwd: Path, what: str) -> None:
    # a preloaded sanitizer runtime (the ASan test run) must not follow the
    # compiler: its leak check would fail the build
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise ArrowAdapterError(f"building mempool's Arrow adapter: {what} failed "
                                f"(exit {proc.returncode}):\n$ {' '.join(cmd)}\n{tail}")


def build(force: bool = False, quiet: bool = False) -> Path:
    """Build the adapter for the installed pyarrow into :func:`build_dir`
    (nothing to do when it is there, unless ``force``); return the module's
    path.  Safe to call from many processes at once."""
    try:
        import pyarrow
    except ImportError:
        raise ArrowAdapterError(f"mempool.arrow needs pyarrow: {INSTALL_HINT}") from None
    target = build_dir()
    module = _module_path(target)
    if module.exists() and not force:
        return module
    try:
        import Cython
    except ImportError:
        raise ArrowAdapterError(
            "mempool's Arrow adapter is compiled the first time it is used against the "
            f"pyarrow installed ({pyarrow.__version__}), which needs Cython: {INSTALL_HINT} "
            "(or pip install 'Cython>=3')") from None
    import numpy
    root = target.parent
    with _locked(root, target.name):
        if module.exists() and not force:
            return module     # another process built it while we waited
        if not quiet:
            print(f"mempool: building the Arrow adapter for pyarrow {pyarrow.__version__} "
                  f"(once; cached in {target})", file=sys.stderr, flush=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        try:
            for name in SOURCES:
                shutil.copy(HERE / name, work / name)
            site = str(Path(pyarrow.__file__).resolve().parent.parent)
            _run([sys.executable, "-m", "cython", "--cplus", "-3", "--module-name", MODULE,
                  "-I", site, "_adapter.pyx", "-o", "_adapter_glue.cpp"], work, "Cython")
            libs = _arrow_libraries()
            abi = _cxx11_abi(next(p for p in libs if p.name.startswith("libarrow.so")))
            flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"] \
                if _sanitize() else ["-O2"]
            cmd = [*_compiler(), "-shared", "-fPIC", "-std=c++20", "-pthread", *flags,
                   f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-fvisibility=hidden",
                   "-I", str(work), "-I", str(HERE / "include"), "-I", pyarrow.get_include(),
                   "-I", numpy.get_include(), "-I", sysconfig.get_paths()["include"],
                   "_adapter_glue.cpp", "adapter.cpp", "-o", module.name,
                   *[str(p) for p in libs],
                   *[f"-Wl,-rpath,{d}" for d in pyarrow.get_library_dirs()], "-ldl"]
            _run(cmd, work, "the C++ compile")
            info = {"pyarrow": pyarrow.__version__, "cython": Cython.__version__,
                    "python": sys.version.split()[0], "cxx11_abi": abi,
                    "sanitize": _sanitize(), "seconds": round(time.monotonic() - started, 1),
                    "command": cmd}
            (work / "build-info.json").write_text(json.dumps(info, indent=1))
            if target.exists():
                shutil.rmtree(target)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return module


def build_info(directory: Optional[Path] = None) -> Dict[str, Any]:
    """What the adapter in ``directory`` (default: :func:`build_dir`) was built with."""
    path = (directory or build_dir()) / "build-info.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _version_text(packed: int) -> str:
    return f"{packed // 1000000}.{packed // 1000 % 1000}.{packed % 1000}"


def check_versions(compiled: int, runtime: int, where: Path) -> None:
    """An :class:`ArrowVersionMismatch` saying what to do when the adapter
    in ``where`` was compiled for another Arrow C++ than the one loaded."""
    if compiled == runtime:
        return
    import pyarrow
    raise ArrowVersionMismatch(
        f"mempool's Arrow adapter in {where} was built for Arrow C++ "
        f"{_version_text(compiled)} but this process loaded Arrow C++ "
        f"{_version_text(runtime)} (pyarrow {pyarrow.__version__}); Arrow's C++ ABI "
        f"changes between versions, so it cannot be used. Rebuild it for the "
        f"installed pyarrow: python -m mempool.arrow build --force (or delete {where})")


def load() -> Any:
    """The adapter module for the installed pyarrow, built if needed, its
    core resolved and its Arrow version checked against the loaded one."""
    loaded = sys.modules.get(MODULE)
    if loaded is not None:
        return loaded
    import pyarrow

    from mempool import _core
    path = build()
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, ValueError) as exc:   # e.g. a pyarrow type whose size changed
        raise ArrowVersionMismatch(
            f"mempool's Arrow adapter in {path.parent} does not load with pyarrow "
            f"{pyarrow.__version__}: {exc}. Rebuild it: python -m mempool.arrow build "
            f"--force") from exc
    check_versions(module.compiled_arrow_version(), module.runtime_arrow_version(),
                   path.parent)
    module.resolve_core(_core.__file__)
    sys.modules[MODULE] = module
    return module
