"""Build of the extensions:

- mempool._core, the runtime: the Cython glue plus every C file of the core's
  layers and of csrc/trace/ (the recorder) - globbed, so files added to a
  folder are picked up - and nothing of csrc/tools/;
- mempool.tools._replay, the replay engine (csrc/tools/) for the tools: it
  calls the core through mempool._core's exported function pointers;
- mempool._testhooks, for the tests: likewise, no core source of its own.

MEMPOOL_SANITIZE=1 builds with AddressSanitizer and UBSan (DESIGN §6); run the
result with libasan preloaded (see .ci/run).
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))

if os.environ.get("MEMPOOL_SANITIZE", "") not in ("", "0"):
    SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-g", "-O1", "-fno-sanitize-recover=all"]
    # the core's own checks too: assertions and lock ranks (csrc/base/base.h)
    compile_args = ["-std=c11", "-pthread", "-DMP_CHECK_LEVEL=1"] + SANITIZE
    link_args = ["-pthread"] + SANITIZE
else:
    compile_args = ["-std=c11", "-O2", "-pthread"]
    link_args = ["-pthread"]

# csrc/tools/ is the one folder left out of the runtime: the tools' code.
TOOLS_DIR = os.path.join("csrc", "tools")
core_sources = sorted(
    rel for rel in (os.path.relpath(p, HERE)
                    for p in glob.glob(os.path.join(HERE, "csrc", "*", "*.c")))
    if os.path.dirname(rel) != TOOLS_DIR)

extension = Extension(
    "mempool._core",
    sources=["mempool/_core.pyx"] + core_sources,
    include_dirs=["csrc/include", "csrc/trace", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                   ("NPY_TARGET_VERSION", "NPY_1_22_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    depends=glob.glob(os.path.join(HERE, "csrc", "*", "*.h")),
)

# Test hooks (tests only): this .pyx alone, no core source; it calls the
# core of mempool._core through the pointers that module exports.
testhooks = Extension(
    "mempool._testhooks",
    sources=["mempool/_testhooks.pyx"],
    include_dirs=extension.include_dirs,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

# The replay engine: its C file and its glue; the core through _core's
# function pointers (see the .pyx for why not a copy of the core).
replay = Extension(
    "mempool.tools._replay",
    sources=["mempool/tools/_replay.pyx",
             os.path.join(TOOLS_DIR, "replay.c")],
    include_dirs=["csrc/include", "csrc/trace", "csrc/tools"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    depends=[os.path.join("csrc", d, d + ".h") for d in ("tools", "trace")],
)

setup(
    ext_modules=cythonize([extension, testhooks, replay], language_level=3,
                          compiler_directives={"embedsignature": True}),
)
