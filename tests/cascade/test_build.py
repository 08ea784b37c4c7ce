"""eedge.cascade.build_cascade: members merged, one stage per member, checked against
each member's own runtime; clear errors for what cannot be cascaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from eedge.cascade import build_cascade
from eedge.errors import ModelError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from cascade_fixtures import cascade_case  # noqa: F401


def test_one_stage_per_member_each_reading_the_input(cascade_case) -> None:  # type: ignore[no-untyped-def]
    for path in cascade_case.members:  # the user's files: torch.onnx.export's defaults
        assert Path(str(path) + ".data").is_file()
    bundle = load_bundle(cascade_case.bundle)
    m = bundle.manifest
    assert [s["exit"] for s in m["stages"]] == [0, 1, 2]
    for stage in m["stages"]:
        for fmt in ("onnx", "tflite", "tflite_int8"):
            assert [t["name"] for t in stage["io"][fmt]["inputs"]] == ["input"]
            assert len(stage["io"][fmt]["outputs"]) == 1  # the member's logits, no hand-off
    members = m["cascade"]["members"]
    assert [x["name"] for x in members] == ["small", "medium", "large"]
    assert [x["macs"] for x in members] == [s["macs"] for s in m["stages"]]
    assert members[0]["macs"] < members[1]["macs"] < members[2]["macs"]
    assert members[2]["sha256"] != members[1]["sha256"]
    assert m["cascade"]["merge_check"]["max_abs_diff"] <= 1e-4
    assert m["verification"]["tflite_int8"]["staged_vs_monolithic"]["identical"] is True
    assert m["verification"]["tflite_int8"]["reference_vs_tflm"]["identical"] is True


def test_exits_are_the_members_outputs(cascade_case) -> None:  # type: ignore[no-untyped-def]
    """Exit k of every runtime is member k as torch computes it (the resize member too)."""
    x = cascade_case.data.x_test[:64]
    cascade = Cascade(load_bundle(cascade_case.bundle), runtime="onnx")
    logits = cascade.run_all_exits(x)
    for module, got in zip(cascade_case.modules, logits):
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    int8 = Cascade(load_bundle(cascade_case.bundle), runtime="int8-reference").run_all_exits(x)
    for k, (a, b) in enumerate(zip(int8, logits)):
        agree = np.mean(np.argmax(a, -1) == np.argmax(b, -1))
        assert agree >= 0.95, (k, agree)


def test_torch_modules_through_the_python_api(cascade_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x = cascade_case.data.x_test[:8]
    result = build_cascade(cascade_case.modules[:2], tmp_path / "b", example=x[:1],
                           names=["s", "m"])
    m = result.bundle.manifest
    assert m["model"]["source_format"] == "torch"
    assert [e["name"] for e in m["cascade"]["members"]] == ["s", "m"]
    got = Cascade(result.bundle).run_all_exits(x)
    with torch.no_grad():
        want = [mod(torch.from_numpy(x)).numpy() for mod in cascade_case.modules[:2]]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-4)


def _linear_onnx(path: Path, shape: list[int], classes: int, seed: int = 0) -> Path:
    """A one-Gemm classifier on flattened ``shape`` inputs (onnx.helper)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = int(np.prod(shape[1:]))
    w = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "w")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"],
                                                                        ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, [shape[0], classes])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_members_with_helper_made_onnx(tmp_path: Path) -> None:
    a = _linear_onnx(tmp_path / "a.onnx", [1, 1, 8, 8], 10, 0)
    b = _linear_onnx(tmp_path / "b.onnx", ["N", 1, 8, 8], 10, 1)  # dynamic batch meets 1
    bundle = build_cascade([a, b], tmp_path / "ab").bundle
    assert bundle.manifest["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert [s["macs"] for s in bundle.stages] == [640, 640]


def _members_for(case: str, tmp: Path) -> list[object]:
    a = _linear_onnx(tmp / "a.onnx", [1, 1, 8, 8], 10)
    if case == "one":
        return [a]
    if case == "missing":
        return [a, tmp / "nope.onnx"]
    if case == "suffix":
        (tmp / "a.pt").write_bytes(b"x")
        return [a, tmp / "a.pt"]
    if case == "shape":
        return [a, _linear_onnx(tmp / "b.onnx", [1, 1, 6, 6], 10)]
    if case == "classes":
        return [a, _linear_onnx(tmp / "b.onnx", [1, 1, 8, 8], 5)]
    if case == "order":  # the first member costs more than the last
        big = _linear_onnx(tmp / "big.onnx", [1, 1, 8, 8], 40)
        _mlp_onnx_smaller(tmp / "small.onnx")
        return [big, tmp / "small.onnx"]
    raise AssertionError(case)


@pytest.mark.parametrize("case, message", [
    ("one", "at least two members"),
    ("missing", "does not exist"),
    ("suffix", "neither .onnx nor .tflite"),
    ("shape", "all members read the same input"),
    ("classes", "different numbers of classes"),
    ("order", "order the members cheapest first"),
])
def test_clear_errors(tmp_path: Path, case: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_cascade(_members_for(case, tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _mlp_onnx_smaller(path: Path) -> None:
    """A member cheaper than 64x40: reads 8x8, outputs 40 classes through a 1x1 reduction."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((16, 40), np.float32), "w")
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, [1, 40])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_different_input_dtypes_fail(tmp_path: Path) -> None:
    a = _linear_onnx(tmp_path / "a.onnx", [1, 1, 8, 8], 10)
    model = onnx.load(a)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    onnx.save(model, tmp_path / "d.onnx")
    with pytest.raises(ModelError, match="takes double input, member a float"):
        build_cascade([a, tmp_path / "d.onnx"], tmp_path / "out")


def test_members_of_different_opsets(cascade_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An onnx.helper model at opset 17 before torch's opset-20 export: converted up."""
    a = _linear_onnx(tmp_path / "a.onnx", [1, 1, 8, 8], 10)
    bundle = build_cascade([a, cascade_case.members[0]], tmp_path / "b").bundle
    x = cascade_case.data.x_test[:8]
    got = Cascade(bundle).run_all_exits(x)
    with torch.no_grad():
        want = cascade_case.modules[0](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got[1], want, atol=1e-4)
    assert bundle.manifest["model"]["opset"] >= 18
