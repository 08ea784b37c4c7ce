"""A missing optional package (torch, TVM) is a setup problem with one line, not a bug."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402


def test_demo_without_torch_says_what_to_install(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    code, _out, err = run_cli(capsys, "demo", "--out", str(tmp_path / "d"), "--no-firmware")
    assert code == 8, err
    assert "internal error" not in err
    assert "pip install torch==2.13.0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_torch_factory_without_torch(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    factory = tmp_path / "net.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _out, err = run_cli(capsys, "export", f"{factory}:build", "--input-shape", "1,4",
                              "--out", str(tmp_path / "b"))
    assert code == 8, err
    assert "'torch'" in err and "internal error" not in err


def test_other_missing_modules_are_still_bugs(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from eedge.optional import optional_dependency_error

    assert optional_dependency_error(ModuleNotFoundError("x", name="numpy")) is None
    assert optional_dependency_error(ModuleNotFoundError("x", name="tvm.relax")) is not None
