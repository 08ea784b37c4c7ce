"""Staged execution equals the whole model, and a broken stage is caught."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from eedge.errors import ModelError, VerificationError
from eedge.ir.bundle import file_entries, load_bundle, write_manifest
from eedge.verify.equivalence import check_staged_equals_whole


@pytest.mark.parametrize("name", ["sequential", "residual", "branchy", "depthwise", "audio1d",
                                  "mlp"])
def test_every_architecture_is_exact(bundle_of, name: str) -> None:  # type: ignore[no-untyped-def]
    bundle = bundle_of(name).bundle
    report = bundle.manifest["verification"]["onnx"]
    assert report["max_abs_diff"] <= 1e-5
    assert report["samples"] >= 16


def test_user_inputs_are_checked_too(bundle_of) -> None:  # type: ignore[no-untyped-def]
    bundle = bundle_of("mlp").bundle
    x = np.random.default_rng(5).standard_normal((9, 16)).astype(np.float32)
    report = check_staged_equals_whole(bundle, [x])
    assert report.samples == 16 + 9


def test_a_stage_with_wrong_weights_fails_verification(bundle_of) -> None:  # type: ignore[no-untyped-def]
    bundle = bundle_of("mlp").bundle
    path = bundle.path / "stage1.onnx"
    model = onnx.load(path)
    init = model.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    onnx.save(model, path)
    manifest = bundle.manifest
    manifest["files"] = file_entries(bundle.path, list(manifest["files"]))  # re-sign
    write_manifest(bundle.path, manifest)
    with pytest.raises(VerificationError, match="differs from the whole model"):
        check_staged_equals_whole(load_bundle(bundle.path))


@pytest.mark.parametrize("formats", [("onnx",), ("onnx", "tflite")])
def test_nan_weights_are_refused_not_verified(onnx_file, tmp_path, formats) -> None:  # type: ignore[no-untyped-def]
    """max(old, nan) keeps old: a NaN model once exported with a max |diff| of 0."""
    from eedge.export import export_onnx

    model = onnx.load(onnx_file("mlp"))
    init = model.graph.initializer[0]
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    path = tmp_path / "nan.onnx"
    onnx.save(model, path)
    out = tmp_path / "bundle"
    with pytest.raises(ModelError, match="NaN"):
        export_onnx(path, out, formats=formats)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outputs_that_overflow_to_infinity_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Finite weights can still give inf (1e30 * 1e30): the comparison must not pass it."""
    from onnx import TensorProto, helper

    from eedge.export import export_onnx

    big = numpy_helper.from_array(np.full((4, 4), 1e30, np.float32), "big")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "big"], ["h"]),
         helper.make_node("MatMul", ["h", "big"], ["logits"])], "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], [big])
    path = tmp_path / "overflow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match="NaN or infinite"):
        export_onnx(path, tmp_path / "bundle", formats=("onnx",))
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_torch_module_with_nan_weights_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The demo's model.pt with stage1.0.weight set to NaN once exported as 'verified'."""
    import torch

    from eedge.examples.digits_model import DigitsNet
    from eedge.export import export_torch

    model = DigitsNet().eval()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelError, match="NaN"):
        export_torch(model, torch.zeros(1, 1, 8, 8), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
