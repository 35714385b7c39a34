"""Build hooks that ship ``mempool-startup.pth`` at the top of site-packages
(the start-up install, see mempool/_startup.py; the line is in
mempool/_environ.py), for ``pip install .`` and
``pip install -e .`` alike.

A regular wheel takes every file at the root of build_lib into
site-packages, so ``build_py`` writes the .pth there.  An editable install
(setuptools' PEP 660 ``editable_wheel``) ignores build_lib and packs the
directory that ``install`` points ``install_lib`` at, so in editable mode the
.pth is written there instead.  Named in pyproject.toml's
``[tool.setuptools.cmdclass]``.
"""
import importlib.util
import os

from setuptools.command.build_py import build_py as _build_py

_HERE = os.path.dirname(os.path.abspath(__file__))


def _startup_module():
    # _environ imports nothing of the package, so it loads on its own here
    path = os.path.join(_HERE, os.pardir, "mempool", "_environ.py")
    spec = importlib.util.spec_from_file_location("_mempool_environ_for_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py(_build_py):
    """build_py that also writes mempool-startup.pth next to the package."""

    def run(self):
        super().run()
        startup = _startup_module()
        if getattr(self, "editable_mode", False):
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, startup.PTH_NAME)
        with open(path, "w", encoding="utf-8") as f:
            f.write(startup.pth_text())
        self._mempool_pth = path

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, _startup_module().PTH_NAME))
        return outputs
