"""TVM backend: compiled stages equal ONNX Runtime; the rpi4 library is an aarch64 ELF."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from zoo import example_input

from eedge.errors import BundleError, ToolchainError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade

tvm = pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends.tvm_compiler import compile_bundle  # noqa: E402

EM_AARCH64 = 183


@pytest.mark.parametrize("name", ["residual", "depthwise", "mlp"])
def test_tvm_stages_equal_onnx_runtime(bundle_of, name: str) -> None:  # type: ignore[no-untyped-def]
    bundle = compile_bundle(bundle_of(name).bundle, "host")
    assert load_bundle(bundle.path).manifest["tvm"]["host"]["version"] == tvm.__version__
    shape = [d if isinstance(d, int) else 5 for d in bundle.manifest["inputs"][0]["shape"]]
    x = example_input(seed=3, batch=5) if len(shape) == 4 else \
        np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    for a, b in zip(Cascade(bundle, runtime="tvm").run_all_exits(x),
                    Cascade(bundle, runtime="onnx").run_all_exits(x)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    routed_tvm = Cascade(bundle, runtime="tvm").infer(x)
    routed_ort = Cascade(bundle, runtime="onnx").infer(x)
    assert np.array_equal(routed_tvm.predictions, routed_ort.predictions)


def test_digits_demo_model_via_cli(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from eedge.examples.digits import load_digits_splits
    from eedge.examples.digits_model import build_model
    from eedge.export import export_torch

    data = load_digits_splits(seed=0)
    bundle = export_torch(build_model(), data.x_val[:2], tmp_path / "digits").bundle
    code, out, err = run_cli(capsys, "compile", str(bundle.path), "--backend", "tvm",
                             "--target", "host", "--json")
    assert code == 0, err
    assert set(json.loads(out)["files"]) == {f"stage{i}.tvm-host.so" for i in range(3)}
    x = data.x_test[:64]
    for a, b in zip(Cascade(load_bundle(bundle.path), runtime="tvm").run_all_exits(x),
                    Cascade(bundle, runtime="onnx").run_all_exits(x)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_rpi4_library_is_an_aarch64_elf(bundle_of) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (make system installs it)")
    bundle = compile_bundle(bundle_of("mlp").bundle, "rpi4")
    for stage in bundle.stages:
        header = (bundle.path / stage["files"]["tvm_rpi4"]).read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and header[4] == 2 and header[5] == 1  # 64-bit, LE
        assert struct.unpack_from("<HH", header, 16) == (3, EM_AARCH64)  # shared object
    assert "aarch64" in bundle.manifest["tvm"]["rpi4"]["target"]


def test_errors_are_clear_and_leave_the_bundle_alone(bundle_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = bundle_of("mlp").bundle
    before = (bundle.path / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="eedge compile BUNDLE --backend tvm"):
        Cascade(bundle, runtime="tvm")
    with pytest.raises(ToolchainError, match="no TVM target"):
        compile_bundle(bundle, "cortex-m4")
    assert (bundle.path / "manifest.json").read_bytes() == before
    assert not list(bundle.path.glob("*.so*"))
