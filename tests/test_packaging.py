"""The built wheel works on its own, on every supported Python.

``targets/`` and ``firmware_templates/`` sit at the top of the checkout, outside
the package: a wheel built without ``setup.py``'s copy step had neither, so an
installed eedge listed no targets and could not generate firmware. These tests
build the wheel from a copy of the sources, install it into a fresh venv outside
the checkout and drive the CLI from there. The smoke needs no torch (the bundle
is exported here, with the dev venv), so the clean venv does not pull it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

sys.path.insert(0, str(Path(__file__).parent / "codegen"))

from int8_bundles import int8_bundle  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.ir.bundle import Bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "eedge", "targets",
           "firmware_templates")
DATA_DIRS = ("targets", "firmware_templates")
SMOKE_PYTHONS = ("3.11", "3.13")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the checkout gets no build/ dir)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    # (*.so: the checkout's in-place build of the C helper; the wheel must compile its own)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    for name in SOURCES:
        if not (ROOT / name).exists():
            continue
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, source / name)
    # reuse this venv's setuptools when it has one (3.12+ venvs may not: then pip
    # builds in an isolated env, from the index)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation,
           "--wheel-dir", str(root / "dist"), str(source)], cwd=root)
    (found,) = (root / "dist").glob("eedge-*.whl")
    return found


def check(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 600) -> str:
    proc = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(command[:4])} … exited {proc.returncode}:\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def test_the_wheel_carries_the_targets_and_firmware_templates(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # the C helper, built for the stable ABI: one wheel installs on every supported Python
    assert "-cp311-abi3-" in wheel.name, wheel.name
    assert "eedge/runtime/_rowdecide.abi3.so" in names
    for directory in DATA_DIRS:
        expected = {f"eedge/_data/{directory}/{p.relative_to(ROOT / directory)}"
                    for p in (ROOT / directory).rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts}
        assert expected and expected <= names, sorted(expected - names)[:5]
    assert "eedge/_data/targets/host.yaml" in names


def find_python(version: str) -> str | None:
    """An interpreter for ``version``: this one, or one on PATH or under pyenv."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    proc = subprocess.run([str(ROOT / "scripts" / "find_python.sh"), f"python{version}"],
                          capture_output=True, text=True)
    return proc.stdout.rsplit(" ", 1)[0] if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return int8_bundle("sequential", tmp_path_factory.mktemp("smoke-bundle"))


@pytest.mark.slow
@pytest.mark.parametrize("version", SMOKE_PYTHONS, ids=[f"py{v}" for v in SMOKE_PYTHONS])
def test_the_installed_wheel_runs_the_firmware_path(
        version: str, wheel: Path, smoke_bundle: Bundle, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    python = find_python(version)
    if python is None:
        message = f"python{version} is not installed (pyenv install {version})"
        if os.environ.get("CI"):  # CI must prove every supported Python, not skip it
            pytest.fail(message)
        pytest.skip(message)
    venv = tmp_path / "venv"
    check([python, "-m", "venv", str(venv)], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # --no-compile: byte-compiling scipy & co. would take most of the install's time
    check([str(venv / "bin" / "pip"), "install", "--quiet", "--no-compile", str(wheel)],
          cwd=tmp_path, env=env, timeout=1200)
    work = tmp_path / "work"
    work.mkdir()
    eedge = str(venv / "bin" / "eedge")

    where = check([str(venv / "bin" / "python"), "-c",
                   "import sys, eedge.targets as t, eedge.codegen.project as p; "
                   "print(t.TARGETS_DIR); print(p.TEMPLATES); print('torch' in sys.modules); "
                   "import eedge.runtime.cascade_one as c; print(c.compiled is not None)"],
                  cwd=work, env=env).split()
    assert all(Path(p).is_relative_to(venv) for p in where[:2]), where
    assert where[2] == "False"  # the firmware path must not need torch
    assert where[3] == "True"  # the batch-1 runtime's C helper came with the wheel

    names = [t["name"] for t in json.loads(check([eedge, "targets", "--json"], work, env))]
    assert {"host", "qemu-cortex-m4"} <= set(names)

    check([eedge, "codegen", str(smoke_bundle.path), "--target", "qemu-cortex-m4",
           "--out", "fw"], work, env)
    report = json.loads(check([eedge, "build", "fw", "--json"], work, env))
    assert report["target"] == "qemu-cortex-m4" and report["flash_bytes"] > 0
    assert str(venv).encode() not in (work / "fw" / "eedge-project.json").read_bytes()

    x = example_input(seed=7, batch=12)
    np.save(work / "x.npy", x)
    installed = json.loads(check([eedge, "run", str(smoke_bundle.path), "--input", "x.npy",
                                  "--target", "host", "--json"], work, env))
    code, out, err = run_cli(capsys, "run", str(smoke_bundle.path), "--input",
                             str(work / "x.npy"), "--target", "host", "--json")
    assert code == 0, err
    dev = json.loads(out)
    assert installed["predictions"] == dev["predictions"]
    assert installed["exit_index"] == dev["exit_index"]
