"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR on every path (eedge/ops/resize.py).

ONNX Resize lowering vs ONNX Runtime (each coordinate mode torch writes, and the
ones TFLite cannot express refused); the float .tflite in LiteRT; int8
reference vs TFLite Micro (the oracle) and LiteRT BUILTIN_REF on 200+ inputs;
writer/reader round trip; the host C build byte for byte. The single-op
helpers here are shared with test_transpose_conv.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.errors import UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.ops import registry
from eedge.ops.resize import bilinear_int_coords
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.targets import load_target

F32 = np.float32
SCALES = [(0.05, 3), (0.2, -128), (0.0078, 17)]


# -- single-op TFLite models (shared with test_transpose_conv.py) --------------------------
Layer = tuple[str, dict[str, Any], list[str], dict[str, np.ndarray], tuple[int, ...],
              "QuantParams | None"]
"""(op, attrs, inputs ("@" is the previous layer's output), constants, output shape,
output quantization (None: float))."""


def chain_graph(x_shape: tuple[int, ...], in_q: QuantParams | None, layers: list[Layer]) -> Graph:
    """x -> layer 1 -> ... -> RESHAPE -> flat (the reader wants (batch, classes) exits).

    int8 layers' float constants are quantized by the op's own registry rule, as PTQ does.
    """
    dtype = "int8" if in_q else "float32"
    tensors = {"x": TensorInfo("x", x_shape, dtype, in_q)}
    constants: dict[str, np.ndarray] = {}
    nodes, previous, quant = [], "x", {"x": in_q}
    for i, (op, attrs, inputs, consts, out_shape, out_q) in enumerate(layers):
        out = "y" if i == len(layers) - 1 else f"t{i}"
        tensors[out] = TensorInfo(out, out_shape, dtype, out_q)
        quant[out] = out_q
        constants.update(consts)
        nodes.append(Node(f"op{i}", op, [previous if t == "@" else t for t in inputs], [out],
                          dict(attrs)))
        previous = out
    flat = (1, int(np.prod(tensors["y"].shape[1:])))
    tensors["flat"] = TensorInfo("flat", flat, dtype, tensors["y"].quant)
    constants["flat_shape"] = np.array(flat, np.int32)
    nodes.append(Node("flatten", "RESHAPE", ["y", "flat_shape"], ["flat"], {}))
    graph = Graph("ops", [tensors["x"]], ["flat"], nodes, constants, tensors, 13, 8, "tflite")
    if in_q:
        for node in nodes[:-1]:
            op = registry.builtin(node.op_type)
            rule = op.quantize_constants if op is not None else None
            if rule is not None:
                quantized: dict[str, np.ndarray] = {}
                rule(graph, node, quant, quantized, graph.const_quant)
                graph.constants.update(quantized)
    return graph


def one_op_graph(op: str, attrs: dict[str, Any], inputs: list[str], x_shape: tuple[int, ...],
                 y_shape: tuple[int, ...], constants: dict[str, np.ndarray],
                 quant: tuple[QuantParams, QuantParams] | None = None) -> Graph:
    """x -> op -> y -> RESHAPE -> flat; ``quant``: (input, output) params of an int8 graph."""
    in_q, out_q = quant if quant else (None, None)
    return chain_graph(x_shape, in_q, [(op, attrs, ["@" if t == "x" else t for t in inputs],
                                        constants, y_shape, out_q)])


def tflite_bytes(graph: Graph) -> bytes:
    return graph_to_tflite(graph, range(len(graph.nodes)), ["x"], ["flat"])


def int8_inputs(shape: tuple[int, ...], count: int = 200, seed: int = 0) -> np.ndarray:
    """The two extremes, then random bytes."""
    rng = np.random.default_rng(seed)
    rest = rng.integers(-128, 128, (count - 2,) + shape[1:], dtype=np.int8)
    return np.concatenate([np.full((1,) + shape[1:], -128, np.int8),
                           np.full((1,) + shape[1:], 127, np.int8), rest])


def reference(data: bytes, x: np.ndarray) -> np.ndarray:
    """eedge's int8/float reference on the file as the reader reads it back."""
    graph, _ = read_tflite_bytes(data)
    return execute(graph, {"x": x})["flat"]


def assert_same(ours: np.ndarray, theirs: np.ndarray, who: str) -> None:
    theirs = theirs.reshape(ours.shape)
    assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} of {ours.size} bytes " \
                                         f"differ from {who}"


def host_c(data: bytes, x: np.ndarray, tmp_path: Path, target: str = "host",
           dsp: bool | None = None) -> tuple[np.ndarray, Any]:
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    model = load_codegen_model(path)
    run = run_on_target(model, load_target(target), x, dsp=dsp)
    return np.stack([s.stage_outputs[-1][0] for s in run.run.samples]), run


# -- resize models ---------------------------------------------------------------------------
OP = {"nearest": "RESIZE_NEAREST_NEIGHBOR", "linear": "RESIZE_BILINEAR"}
# (mode, in hw, out hw, align_corners, half_pixel_centers, channels)
CASES = [("nearest", (5, 6), (10, 12), False, False, 5),
         ("nearest", (5, 6), (7, 9), False, True, 8),
         ("nearest", (5, 6), (7, 9), True, False, 3),
         ("nearest", (6, 8), (3, 4), False, True, 4),
         ("linear", (4, 5), (8, 10), False, True, 5),
         ("linear", (4, 5), (7, 9), True, False, 8),
         ("linear", (5, 6), (3, 4), False, False, 4),
         ("linear", (3, 3), (8, 8), False, True, 12)]


def resize_graph(mode: str, in_hw: tuple[int, int], out_hw: tuple[int, int], align: bool,
                 half: bool, c: int, quant: tuple[QuantParams, QuantParams] | None = None
                 ) -> Graph:
    return one_op_graph(OP[mode], {"align_corners": align, "half_pixel_centers": half},
                        ["x", "size"], (1, *in_hw, c), (1, *out_hw, c),
                        {"size": np.array(out_hw, np.int32)}, quant)


def shared(scale: float, zero_point: int) -> tuple[QuantParams, QuantParams]:
    q = QuantParams((float(F32(scale)),), (zero_point,))
    return q, q


# -- ONNX Resize lowering ----------------------------------------------------------------------
def onnx_resize(in_hw: tuple[int, int], out_hw: tuple[int, int] | None = None,
                scales: tuple[float, float] | None = None, head: bool = True,
                **attrs: Any) -> onnx.ModelProto:
    """x (1, 3, H, W) -> Resize -> y; with ``head`` y -> Flatten -> Gemm (the exit eedge wants)."""
    inits, inputs = [], ["x", ""]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array([1, 1, *scales], F32), "scales"))
        inputs.append("scales")
        out = [1, 3] + [int(np.floor(i * s)) for i, s in zip(in_hw, scales)]
    else:
        inits.append(numpy_helper.from_array(np.array([1, 3, *out_hw], np.int64), "sizes"))
        inputs += ["", "sizes"]
        out = [1, 3, *out_hw]
    nodes = [helper.make_node("Resize", inputs, ["y"], name="rs", **attrs)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)]
    if head:
        w = np.random.default_rng(1).standard_normal((4, int(np.prod(out)))).astype(F32)
        inits.append(numpy_helper.from_array(w, "w"))
        nodes += [helper.make_node("Flatten", ["y"], ["f"]),
                  helper.make_node("Gemm", ["f", "w"], ["e"], transB=1)]
        outputs = [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, *in_hw])], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


TORCH_NEAREST = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
TORCH_BILINEAR = dict(mode="linear", coordinate_transformation_mode="half_pixel",
                      nearest_mode="floor")
TORCH_ALIGNED = dict(mode="linear", coordinate_transformation_mode="align_corners",
                     nearest_mode="floor")
"""What torch 2.13's default torch.onnx.export writes for nn.Upsample(scale_factor=2,
mode="nearest") and F.interpolate(mode="bilinear", align_corners=False / True)
(pinned by test_transpose_conv.py's end-to-end torch test)."""

LOWERING_CASES = [
    (TORCH_NEAREST, (False, False)),
    (TORCH_BILINEAR, (False, True)),
    (TORCH_ALIGNED, (True, False)),
    (dict(mode="nearest", coordinate_transformation_mode="half_pixel",
          nearest_mode="round_prefer_ceil"), (False, True)),
    (dict(mode="nearest", coordinate_transformation_mode="align_corners",
          nearest_mode="round_prefer_ceil"), (True, False)),
    (dict(mode="linear", coordinate_transformation_mode="asymmetric"), (False, False)),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), (False, True)),
]


@pytest.mark.parametrize("size", [dict(scales=(2.0, 2.0)), dict(out_hw=(7, 9)),
                                  dict(out_hw=(3, 2))], ids=["x2", "7x9", "3x2"])
@pytest.mark.parametrize("attrs,flags", LOWERING_CASES,
                         ids=[f"{a['mode']}-{a['coordinate_transformation_mode']}"
                              f"-{a.get('nearest_mode', '')}" for a, _ in LOWERING_CASES])
def test_lowering_equals_onnx_runtime(attrs: dict[str, str], flags: tuple[bool, bool],
                                      size: dict[str, Any]) -> None:
    in_hw = (5, 6)
    x = np.random.default_rng(0).standard_normal((1, 3, *in_hw)).astype(F32)
    session = ort.InferenceSession(onnx_resize(in_hw, head=False, **size, **attrs)
                                   .SerializeToString())
    expected = session.run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(onnx_resize(in_hw, **size, **attrs)))
    node = lowered.nodes[0]
    assert node.op_type == OP[attrs["mode"]]
    assert (node.attrs["align_corners"], node.attrs["half_pixel_centers"]) == flags or \
        attrs["mode"] == "nearest"   # nearest: any flags that pick the same pixels will do
    got = execute(lowered, {"x": x.transpose(0, 2, 3, 1)})["y"].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)


def test_1d_resize_lowers_on_the_unit_height_layout() -> None:
    """(N, C, L) is lowered as (N, 1, L, C): a 1-D linear resize is a bilinear one of height 1."""
    rng = np.random.default_rng(5)

    def model(head: bool) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(np.array([1, 1, 2], F32), "sc")]
        nodes = [helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", mode="linear",
                                  coordinate_transformation_mode="half_pixel")]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 14])]
        if head:
            inits.append(numpy_helper.from_array(rng.standard_normal((4, 42)).astype(F32), "w"))
            nodes += [helper.make_node("Flatten", ["y"], ["f"]),
                      helper.make_node("Gemm", ["f", "w"], ["e"], transB=1)]
            outputs = [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [1, 3, 7])], outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m

    x = rng.standard_normal((1, 3, 7)).astype(F32)
    expected = ort.InferenceSession(model(False).SerializeToString()).run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(model(True)))
    assert lowered.tensors["y"].shape == (1, 1, 14, 3)
    got = execute(lowered, {"x": x.transpose(0, 2, 1)[:, None]})["y"][:, 0].transpose(0, 2, 1)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("attrs,what", [
    (dict(mode="nearest"), "round_prefer_floor"),          # ONNX's defaults
    (dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="floor"),
     "'floor'"),
    (dict(mode="cubic"), "mode='cubic'")])
def test_resize_tflite_cannot_express_is_refused_by_name(attrs: dict[str, str],
                                                         what: str) -> None:
    with pytest.raises(UnsupportedOpError) as err:
        lower_to_tflite(onnx_to_graph(onnx_resize((5, 6), out_hw=(7, 9), **attrs)))
    message = str(err.value)
    assert "'rs'" in message and what in message and "\n" not in message
    if attrs["mode"] == "nearest":
        assert "use 'asymmetric' with 'floor'" in message


# -- float .tflite in LiteRT ------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}to{c[2]}-{int(c[3])}{int(c[4])}"
                                             for c in CASES])
def test_float_tflite_in_litert_equals_the_float_kernel(case: tuple) -> None:
    graph = resize_graph(*case)
    data = tflite_bytes(graph)
    x = np.random.default_rng(1).standard_normal((4,) + graph.inputs[0].shape[1:]).astype(F32)
    ours = execute(graph, {"x": x})["flat"]
    for reference_kernels in (True, False):
        theirs = LiteRTModel(data, reference=reference_kernels).run([x])[0]
        np.testing.assert_allclose(ours, theirs.reshape(ours.shape), atol=1e-5, rtol=0)


# -- int8: reference vs TFLite Micro and LiteRT BUILTIN_REF -------------------------------------
@pytest.mark.parametrize("scales", SCALES)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}to{c[2]}-{int(c[3])}{int(c[4])}"
                                             for c in CASES])
def test_int8_reference_equals_tflm_and_litert_ref(case: tuple,
                                                   scales: tuple[float, int]) -> None:
    graph = resize_graph(*case, quant=shared(*scales))
    data = tflite_bytes(graph)
    x = int8_inputs(graph.inputs[0].shape)
    ours = reference(data, x)
    assert_same(ours, TFLMModel(data, 1).run([x])[0], "TFLite Micro")
    assert_same(ours, LiteRTModel(data, reference=True).run([x])[0], "LiteRT BUILTIN_REF")


def test_bilinear_inputs_hit_negative_ties() -> None:
    """Guards the rounding check above: on these inputs some 2^20-scaled sums are exact
    negative halves, where TFLite's two roundings (halves away from zero, the default
    build; floor of x + 1/2, TFLITE_SINGLE_ROUNDING) give other bytes."""
    _, in_hw, out_hw, align, half, c = CASES[5]
    y0, y1, dy = bilinear_int_coords(in_hw[0], out_hw[0], align, half)
    x0, x1, dx = bilinear_int_coords(in_hw[1], out_hw[1], align, half)
    v = int8_inputs((1, *in_hw, c)).astype(np.int64)
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    total = (v[:, y0][:, :, x0] * (1024 - dy) * (1024 - dx) + v[:, y1][:, :, x0] * dy * (1024 - dx)
             + v[:, y0][:, :, x1] * (1024 - dy) * dx + v[:, y1][:, :, x1] * dy * dx)
    assert np.count_nonzero((total < 0) & (total % (1 << 20) == 1 << 19)) > 10


def test_int8_resize_ignores_a_foreign_output_quantization() -> None:
    """TFLM's int8 resize moves bytes and never reads the output's scale: a file whose
    output quantization differs from its input's gives the same bytes, and so does eedge."""
    in_q, out_q = QuantParams((0.05,), (3,)), QuantParams((0.4,), (-20,))
    graph = resize_graph(*CASES[4], quant=(in_q, out_q))
    data = tflite_bytes(graph)
    x = int8_inputs(graph.inputs[0].shape)
    ours = reference(data, x)
    assert_same(ours, TFLMModel(data, 1).run([x])[0], "TFLite Micro")
    assert_same(ours, reference(tflite_bytes(resize_graph(*CASES[4], quant=shared(0.05, 3))),
                                x), "the same resize with shared quantization")


@pytest.mark.parametrize("case", [CASES[1], CASES[5]])
def test_writer_reader_round_trip(case: tuple) -> None:
    graph = resize_graph(*case, quant=shared(0.05, 3))
    back, _ = read_tflite_bytes(tflite_bytes(graph))
    node = back.nodes[0]
    assert node.op_type == graph.nodes[0].op_type and node.attrs == graph.nodes[0].attrs
    assert np.array_equal(back.constants[node.inputs[1]], graph.constants["size"])
    assert back.tensors["y"].quant == graph.tensors["y"].quant


def test_reader_refuses_align_corners_with_half_pixel_centers() -> None:
    graph = resize_graph("linear", (4, 4), (8, 8), True, True, 4, quant=shared(0.05, 3))
    with pytest.raises(Exception, match="align_corners and half_pixel_centers"):
        read_tflite_bytes(tflite_bytes(graph))


# -- C ------------------------------------------------------------------------------------
def resize_chain(c: int, q: QuantParams) -> list[Layer]:
    """Every flag combination of both resizes, up and down, in one model (one C build)."""
    steps = [("RESIZE_NEAREST_NEIGHBOR", False, True, (7, 9)),
             ("RESIZE_BILINEAR", True, False, (12, 13)),
             ("RESIZE_NEAREST_NEIGHBOR", True, False, (10, 11)),
             ("RESIZE_BILINEAR", False, True, (6, 8)),
             ("RESIZE_BILINEAR", False, False, (9, 10)),
             ("RESIZE_NEAREST_NEIGHBOR", False, False, (18, 20))]
    return [(op, {"align_corners": align, "half_pixel_centers": half}, ["@", f"size{i}"],
             {f"size{i}": np.array(hw, np.int32)}, (1, *hw, c), q)
            for i, (op, align, half, hw) in enumerate(steps)]


def test_host_c_build_equals_the_reference(tmp_path: Path) -> None:
    q = shared(0.05, 3)[0]
    graph = chain_graph((1, 5, 6, 7), q, resize_chain(7, q))
    data = tflite_bytes(graph)
    x = int8_inputs(graph.inputs[0].shape, seed=5)
    assert_same(reference(data, x), TFLMModel(data, 1).run([x])[0], "TFLite Micro")
    device, _ = host_c(data, x, tmp_path)
    assert_same(reference(data, x), device, "the host C build")
