"""ONNX files exported the way users export them (issue 15).

Every model here comes from a plain ``torch.onnx.export(model, args, path)``
call, torch 2.13's default (dynamo, weights in ``path.data``), or from the
legacy exporter at an old opset, and goes through ``eedge export`` as a
user would run it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from cli_runner import run_cli
from torch import nn

from eedge.export import export_onnx
from eedge.runtime.cascade import Cascade


class TwoExitNet(nn.Module):
    """The README's example model."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.exit1 = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.exit2 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = self.block1(x)
        h2 = self.block2(h1)
        return self.exit1(h1), self.exit2(h2)


class NormalizedExits(nn.Module):
    """The same network whose exits return probabilities (or log-probabilities)."""

    def __init__(self, net: TwoExitNet, log: bool) -> None:
        super().__init__()
        self.net, self.log = net, log

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.net(x)
        f = F.log_softmax if self.log else F.softmax
        return f(a, dim=1), f(b, dim=1)


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 4), nn.Linear(8, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = a + b
        return self.fc1(h), self.fc2(torch.relu(h))


def _export(module: nn.Module, args: tuple, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), **kwargs)
    return path


@pytest.fixture(scope="module")
def net() -> TwoExitNet:
    torch.manual_seed(0)
    return TwoExitNet().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, net: TwoExitNet) -> dict[str, Path]:
    """One folder per user export; dynamo ones hold m.onnx and m.onnx.data."""
    root = tmp_path_factory.mktemp("user-exports")
    x1, x4 = torch.randn(1, 1, 8, 8), torch.randn(4, 1, 8, 8)
    return {
        "default": _export(net, (x1,), root / "default" / "m.onnx"),
        "batch4": _export(net, (x4,), root / "batch4" / "m.onnx"),
        "dynamic": _export(net, (torch.randn(2, 1, 8, 8),), root / "dynamic" / "m.onnx",
                           dynamic_shapes=({0: torch.export.Dim("batch")},)),
        "softmax": _export(NormalizedExits(net, log=False), (x1,), root / "softmax" / "m.onnx"),
        "logsoftmax": _export(NormalizedExits(net, log=True), (x1,),
                              root / "logsoftmax" / "m.onnx"),
        "opset11": _export(net, (x1,), root / "opset11" / "m.onnx", dynamo=False,
                           opset_version=11),
        "opset9": _export(net, (x1,), root / "opset9" / "m.onnx", dynamo=False,
                          opset_version=9),
        "two_inputs": _export(TwoInputNet().eval(), (torch.randn(1, 8), torch.randn(1, 8)),
                              root / "two_inputs" / "m.onnx"),
    }


def _inputs(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 8, 8)).astype(np.float32)


def _torch_exits(net: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in net(torch.from_numpy(x))]


def test_default_export_with_external_data(files: dict[str, Path], net: TwoExitNet,
                                           tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    source = files["default"]
    assert (source.parent / "m.onnx.data").is_file()
    monkeypatch.chdir(tmp_path)  # not the model's folder
    code, _out, err = run_cli(capsys, "export", str(source), "--out", "bundle")
    assert code == 0, err
    bundle = tmp_path / "bundle"
    assert not [p.name for p in bundle.iterdir() if p.name.endswith(".data")]
    for path in bundle.glob("*.onnx"):  # every file loads on its own
        model = onnx.load(path, load_external_data=False)
        assert all(t.data_location == onnx.TensorProto.DEFAULT
                   for t in model.graph.initializer), path.name
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle, moved)
    x = _inputs(5)
    staged = Cascade(moved).run_all_exits(x)
    for got, want in zip(staged, _torch_exits(net, x)):
        assert np.allclose(got, want, atol=1e-4)


def test_fixed_batch_4_export_gets_a_symbolic_batch(files: dict[str, Path], net: TwoExitNet,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = export_onnx(files["batch4"], tmp_path / "b", formats=("onnx", "tflite"),
                         int8=True, calibration=_inputs(32, seed=1))
    manifest = result.bundle.manifest
    assert manifest["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert any("fixed batch of 4" in n for n in result.notes)
    assert manifest["model"]["notes"] == result.notes
    from cli_runner import run_cli

    code, out, err = run_cli(capsys, "inspect", str(result.bundle.path))
    assert code == 0 and "note: " in out, err  # inspect shows what import changed
    x = _inputs(7)
    for got, want in zip(Cascade(result.bundle).run_all_exits(x), _torch_exits(net, x)):
        assert got.shape == (7, 10) and np.allclose(got, want, atol=1e-4)
    assert Cascade(result.bundle, runtime="int8-reference").infer(x).predictions.shape == (7,)


@pytest.mark.parametrize("name, shape", [("batch4", "1,1,8,8"), ("dynamic", "16,1,8,8")])
def test_input_shape_batch_is_accepted(files: dict[str, Path], tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                       name: str, shape: str) -> None:
    code, out, err = run_cli(capsys, "export", str(files[name]), "--out",
                             str(tmp_path / "b"), "--input-shape", shape)
    assert code == 0, err
    assert ("note: the model was exported with a fixed batch of 4" in out) == (name == "batch4")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == ["batch", 1, 8, 8]


@pytest.mark.parametrize("name", ["opset11", "opset9"])
def test_legacy_exports_at_old_opsets_are_converted(files: dict[str, Path], net: TwoExitNet,
                                                    tmp_path: Path, name: str) -> None:
    result = export_onnx(files[name], tmp_path / "b")
    opset = name.removeprefix("opset")
    assert any(f"opset {opset}" in n and "converted" in n for n in result.notes)
    assert result.bundle.manifest["model"]["opset"] == 13
    x = _inputs(3)
    for got, want in zip(Cascade(result.bundle).run_all_exits(x), _torch_exits(net, x)):
        assert np.allclose(got, want, atol=1e-4)


def test_two_input_model_is_refused_in_one_line(files: dict[str, Path], tmp_path: Path,
                                                capsys) -> None:  # type: ignore[no-untyped-def]
    code, _out, err = run_cli(capsys, "export", str(files["two_inputs"]), "--out",
                              str(tmp_path / "b"))
    assert code == 3
    assert len(err.strip().splitlines()) == 1
    assert "2 inputs" in err and "single-input" in err
    assert not (tmp_path / "b").exists()


def _thresholds(bundle: Path, data: Path, capsys) -> list:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, "calibrate", str(bundle), "--data", str(data),
                             "--max-accuracy-drop", "0.05", "--dry-run", "--json")
    assert code == 0, err
    return json.loads(out)["chosen"]["thresholds"]


def _embedded(source: Path, path: Path) -> Path:
    """The same model in one file, so only the Softmax differs from the plain export."""
    onnx.save(onnx.load(source), path)
    return path


@pytest.mark.parametrize("name", ["softmax", "logsoftmax"])
def test_exits_ending_in_softmax_calibrate_like_logits(files: dict[str, Path], net: TwoExitNet,
                                                       tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                       name: str) -> None:
    plain = export_onnx(_embedded(files["default"], tmp_path / "plain.onnx"),
                        tmp_path / "plain").bundle
    result = export_onnx(_embedded(files[name], tmp_path / f"{name}.onnx"), tmp_path / name)
    x = _inputs(300, seed=4)
    final = _torch_exits(net, x)[1].argmax(axis=1)
    y = np.where(np.arange(len(x)) % 5 == 0, (final + 1) % 10, final)  # some errors
    data = tmp_path / "val.npz"
    np.savez(data, x=x, y=y)
    expected = _thresholds(tmp_path / "plain", data, capsys)
    assert expected[0] is not None  # an operating point where exit 0 takes samples
    assert _thresholds(tmp_path / name, data, capsys) == expected
    op = "LogSoftmax" if name == "logsoftmax" else "Softmax"
    assert sum(f"ended in {op}" in n for n in result.notes) == 2
    assert result.bundle.manifest["model"]["notes"] == result.notes
    for got, want in zip(Cascade(result.bundle).run_all_exits(x[:4]),
                         Cascade(plain).run_all_exits(x[:4])):
        assert np.allclose(got, want, atol=1e-4)
