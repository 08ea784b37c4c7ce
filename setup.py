"""Build hooks: put ``targets/`` and ``firmware_templates/`` into the wheel, and compile
the batch-1 runtime's optional C helper.

They live at the top of the checkout, outside the ``eedge`` package, so plain
package data cannot reach them; without this step a built wheel has no targets
and cannot generate firmware. They are copied to ``eedge/_data/`` (where
``eedge.resources`` looks first). Editable installs skip the copy and read the
checkout, so edits to the C runtime or a target YAML apply without reinstalling.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("targets", "firmware_templates")


class BuildPyWithData(build_py):
    """``build_py`` plus a copy of the top-level data directories into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in DATA_DIRS:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"{source} is missing: build eedge from a full checkout "
                                 "or sdist")
            dest = Path(self.build_lib) / "eedge" / "_data" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(source, dest,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# The cascade's batch-1 input check and float exit decision in C (eedge/runtime/_rowdecide.c).
# Optional: without a compiler the build goes on and the runtime uses its pure-Python twin
# (same decisions, ~3 us more per sample). Stable ABI: one wheel for Python 3.11 and later.
ROW_DECIDE = Extension("eedge.runtime._rowdecide", ["eedge/runtime/_rowdecide.c"],
                       optional=True, py_limited_api=True,
                       extra_compile_args=["-O2", "-Wall", "-Wextra"])

setup(cmdclass={"build_py": BuildPyWithData}, ext_modules=[ROW_DECIDE],
      options={"bdist_wheel": {"py_limited_api": "cp311"}})
