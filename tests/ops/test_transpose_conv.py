"""TRANSPOSE_CONV on every path (eedge/ops/transpose_conv.py), the QEMU M4 run of the
resize family with and without DSP, and the end-to-end torch model.

ConvTranspose lowering vs ONNX Runtime (stride 2, k = 2/3/4, with and without
bias and output_padding); the float .tflite in LiteRT; int8 reference vs TFLite
Micro (the oracle) and LiteRT BUILTIN_REF on 200 inputs at several scales;
writer/reader round trip; host C build; QEMU Cortex-M4 with the DSP path on and
off; a two-exit torch model with upsampling and a ConvTranspose through export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_resize import (TORCH_ALIGNED, TORCH_BILINEAR, TORCH_NEAREST, assert_same, chain_graph,
                         host_c, int8_inputs, one_op_graph, reference, resize_chain,
                         tflite_bytes)

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph, QuantParams
from eedge.ops.transpose_conv import kernel_padding, tflite_pad
from eedge.passes.cost import node_macs
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel

F32 = np.float32
# (kernel, stride, (pad begin, pad end), output_padding)
ONNX_CASES = [(2, 2, (0, 0), 0), (3, 2, (1, 1), 1), (4, 2, (1, 1), 0), (3, 2, (0, 0), 0),
              (3, 2, (1, 1), 0), (4, 2, (0, 0), 1), (3, 1, (1, 1), 0), (5, 3, (2, 1), 2)]


def onnx_conv_transpose(k: int, s: int, pads: tuple[int, int], op: int, bias: bool,
                        head: bool = True, in_hw: tuple[int, int] = (5, 6), cin: int = 3,
                        cout: int = 4, dilation: int = 1, group: int = 1,
                        auto_pad: str = "NOTSET") -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((cin, cout // group, k, k)).astype(F32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(F32), "b"))
        inputs.append("b")
    out = [1, cout] + [s * (i - 1) + op + (k - 1) * dilation + 1 - pads[0] - pads[1]
                       for i in in_hw]
    attrs: dict[str, Any] = dict(strides=[s, s], output_padding=[op, op], group=group,
                                 dilations=[dilation, dilation])
    if auto_pad == "NOTSET":
        attrs["pads"] = [pads[0], pads[0], pads[1], pads[1]]
    else:
        attrs["auto_pad"] = auto_pad
        out = [1, cout] + [s * i for i in in_hw]
    nodes = [helper.make_node("ConvTranspose", inputs, ["y"], name="ct", **attrs)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)]
    if head:
        w = rng.standard_normal((4, int(np.prod(out)))).astype(F32)
        inits.append(numpy_helper.from_array(w, "fw"))
        nodes += [helper.make_node("Flatten", ["y"], ["f"]),
                  helper.make_node("Gemm", ["f", "fw"], ["e"], transB=1)]
        outputs = [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, cin, *in_hw])], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", ONNX_CASES, ids=[f"k{c[0]}s{c[1]}p{c[2][0]}{c[2][1]}op{c[3]}"
                                                  for c in ONNX_CASES])
def test_lowering_equals_onnx_runtime(case: tuple, bias: bool) -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(F32)
    session = ort.InferenceSession(onnx_conv_transpose(*case, bias, head=False)
                                   .SerializeToString())
    expected = session.run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(onnx_conv_transpose(*case, bias)))
    assert lowered.nodes[0].op_type == "TRANSPOSE_CONV"
    got = execute(lowered, {"x": x.transpose(0, 2, 3, 1)})["y"].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_1d_conv_transpose_lowers_as_unit_height() -> None:
    """ConvTranspose1d (k=3, s=2, p=1, output_padding=1) on (N, C, L) -> a 1 x k kernel."""
    w = np.random.default_rng(5).standard_normal((3, 4, 3)).astype(F32)
    fw = np.random.default_rng(6).standard_normal((4, 56)).astype(F32)

    def model(head: bool) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="ct", strides=[2],
                                  pads=[1, 1], output_padding=[1])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 14])]
        if head:
            inits.append(numpy_helper.from_array(fw, "fw"))
            nodes += [helper.make_node("Flatten", ["y"], ["f"]),
                      helper.make_node("Gemm", ["f", "fw"], ["e"], transB=1)]
            outputs = [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [1, 3, 7])], outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m

    x = np.random.default_rng(0).standard_normal((1, 3, 7)).astype(F32)
    expected = ort.InferenceSession(model(False).SerializeToString()).run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(model(True)))
    node = lowered.nodes[0]
    assert node.attrs["stride_h"] == 1 and lowered.constants[node.inputs[1]].shape[1] == 1
    got = execute(lowered, {"x": x.transpose(0, 2, 1)[:, None]})["y"][:, 0].transpose(0, 2, 1)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_pytorch_k3_s2_p1_op1_becomes_a_zero_padded_4x4_same_kernel() -> None:
    """TFLite's SAME pads k=3, s=2 at the end, PyTorch at the start: one trailing zero
    row and column make TFLite's pad 1, and the product is exact."""
    assert tflite_pad(10, 3, 2, "SAME") == 0 and tflite_pad(10, 4, 2, "SAME") == 1
    assert kernel_padding(10, 3, 2, 1, "SAME") == (0, 1)
    lowered = lower_to_tflite(onnx_to_graph(onnx_conv_transpose(3, 2, (1, 1), 1, True)))
    node = lowered.nodes[0]
    w = lowered.constants[node.inputs[1]]
    assert node.attrs["padding"] == "SAME" and w.shape == (4, 4, 4, 3)
    assert not w[:, 3].any() and not w[:, :, 3].any()


@pytest.mark.parametrize("attrs,what", [(dict(group=3), "group=3"),
                                        (dict(dilation=2), "dilations"),
                                        (dict(auto_pad="SAME_UPPER"), "auto_pad")])
def test_what_tflite_cannot_express_is_refused_by_name(attrs: dict[str, Any], what: str) -> None:
    model = onnx_conv_transpose(2, 2, (0, 0), 0, False, cin=3, cout=3, **attrs)
    with pytest.raises(UnsupportedOpError) as err:
        lower_to_tflite(onnx_to_graph(model))
    assert "'ct'" in str(err.value) and what in str(err.value)


# -- TFLite single-op models -------------------------------------------------------------------
# (in hw, cin, cout, kernel, stride, padding, out hw, bias, activation)
CASES = [((5, 6), 3, 4, 2, 2, "VALID", (10, 12), True, "NONE"),
         ((5, 6), 8, 5, 4, 2, "SAME", (10, 12), True, "NONE"),
         ((4, 5), 6, 4, 3, 2, "VALID", (9, 11), False, "NONE"),
         ((4, 4), 5, 3, 3, 2, "SAME", (8, 8), True, "RELU"),
         ((3, 5), 4, 2, 5, 3, "SAME", (9, 15), True, "NONE")]
SCALES = [(0.05, 3, 0.1, -5), (0.02, -128, 0.3, 10), (0.1, 20, 0.04, -60)]


def tc_graph(in_hw: tuple[int, int], cin: int, cout: int, k: int, s: int, padding: str,
             out_hw: tuple[int, int], bias: bool, activation: str,
             scales: tuple[float, int, float, int] | None = None) -> Graph:
    rng = np.random.default_rng(k * 10 + cin)
    consts = {"oshape": np.array([1, *out_hw, cout], np.int32),
              "w": (rng.standard_normal((cout, k, k, cin)) * 0.3).astype(F32)}
    inputs = ["oshape", "w", "x"]
    if bias:
        consts["b"] = rng.standard_normal(cout).astype(F32)
        inputs.append("b")
    quant = None
    if scales:
        quant = (QuantParams((float(F32(scales[0])),), (scales[1],)),
                 QuantParams((float(F32(scales[2])),), (scales[3],)))
    return one_op_graph("TRANSPOSE_CONV", dict(padding=padding, stride_h=s, stride_w=s,
                                               activation=activation),
                        inputs, (1, *in_hw, cin), (1, *out_hw, cout), consts, quant)


IDS = [f"{c[0][0]}x{c[0][1]}-k{c[3]}s{c[4]}-{c[5]}-{'b' if c[7] else 'nob'}-{c[8]}"
       for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float_tflite_in_litert_equals_the_float_kernel(case: tuple) -> None:
    graph = tc_graph(*case)
    data = tflite_bytes(graph)
    x = np.random.default_rng(1).standard_normal((4,) + graph.inputs[0].shape[1:]).astype(F32)
    ours = execute(graph, {"x": x})["flat"]
    for reference_kernels in (True, False):
        theirs = LiteRTModel(data, reference=reference_kernels).run([x])[0]
        np.testing.assert_allclose(ours, theirs.reshape(ours.shape), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scales", SCALES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_int8_reference_equals_tflm_and_litert_ref(case: tuple, scales: tuple) -> None:
    graph = tc_graph(*case, scales=scales)
    data = tflite_bytes(graph)
    x = int8_inputs(graph.inputs[0].shape)
    ours = reference(data, x)
    assert_same(ours, TFLMModel(data, 1).run([x])[0], "TFLite Micro")
    assert_same(ours, LiteRTModel(data, reference=True).run([x])[0], "LiteRT BUILTIN_REF")
    assert len(np.unique(ours)) > 20   # not saturated: the requantization is exercised


def test_writer_reader_round_trip() -> None:
    graph = tc_graph(*CASES[3], scales=SCALES[0])
    back, _ = read_tflite_bytes(tflite_bytes(graph))
    node = back.nodes[0]
    assert node.op_type == "TRANSPOSE_CONV" and node.attrs == graph.nodes[0].attrs
    for a, b in zip(node.inputs, graph.nodes[0].inputs):
        if b in graph.constants:
            assert np.array_equal(back.constants[a], graph.constants[b])
    assert back.const_quant[node.inputs[1]].axis == 0
    assert len(back.const_quant[node.inputs[1]].scale) == 3


def test_reader_refuses_a_wrong_bias_scale() -> None:
    graph = tc_graph(*CASES[0], scales=SCALES[0])
    q = graph.const_quant["b"]
    graph.const_quant["b"] = QuantParams(tuple(s * 1000 for s in q.scale), q.zero_point, q.axis)
    with pytest.raises(Exception, match="bias scale"):
        read_tflite_bytes(tflite_bytes(graph))


def test_macs_count_every_tap() -> None:
    graph = tc_graph(*CASES[0])
    # each input pixel meets every weight once: 5 * 6 pixels x 4 * 2 * 2 * 3 weights
    assert node_macs(graph, graph.nodes[0]) == 5 * 6 * 4 * 2 * 2 * 3
    onnx_graph = onnx_to_graph(onnx_conv_transpose(2, 2, (0, 0), 0, True))
    assert node_macs(onnx_graph, onnx_graph.nodes[0]) == 5 * 6 * 4 * 2 * 2 * 3


# -- C ------------------------------------------------------------------------------------
def test_host_c_build_equals_the_reference(tmp_path: Path) -> None:
    """Three transposed convolutions in one model (one build): VALID; SAME with a kernel
    zero-padded as the lowering pads PyTorch's k=3, p=1 (the C kernel skips those taps);
    no bias with an odd output size and a channel count that is not a multiple of 4."""
    in_q = QuantParams((float(F32(0.05)),), (3,))
    q1, q2, q3 = (QuantParams((float(F32(s)),), (z,)) for s, z in ((0.1, -5), (0.2, 7),
                                                                     (0.3, -20)))
    rng = np.random.default_rng(3)
    layers = [("TRANSPOSE_CONV", dict(padding="VALID", stride_h=2, stride_w=2, activation="NONE"),
               ["s0", "w0", "@", "b0"], {"s0": np.array([1, 8, 10, 6], np.int32),
                                         "w0": rng.standard_normal((6, 2, 2, 5)).astype(F32),
                                         "b0": rng.standard_normal(6).astype(F32)},
               (1, 8, 10, 6), q1),
              ("TRANSPOSE_CONV", dict(padding="SAME", stride_h=2, stride_w=2, activation="RELU"),
               ["s1", "w1", "@", "b1"], {"s1": np.array([1, 16, 20, 5], np.int32),
                                         "w1": rng.standard_normal((5, 4, 4, 6)).astype(F32) * .3,
                                         "b1": rng.standard_normal(5).astype(F32)},
               (1, 16, 20, 5), q2),
              ("TRANSPOSE_CONV", dict(padding="VALID", stride_h=2, stride_w=1, activation="NONE"),
               ["s2", "w2", "@"], {"s2": np.array([1, 33, 22, 3], np.int32),
                                   "w2": rng.standard_normal((3, 3, 3, 5)).astype(F32) * .3},
               (1, 33, 22, 3), q3)]
    layers[1][3]["w1"][:, 3] = layers[1][3]["w1"][:, :, 3] = 0   # skipped taps, as lowered
    graph = chain_graph((1, 4, 5, 5), in_q, layers)
    data = tflite_bytes(graph)
    x = int8_inputs(graph.inputs[0].shape, seed=5)
    ours = reference(data, x)
    assert_same(ours, TFLMModel(data, 1).run([x])[0], "TFLite Micro")
    device, _ = host_c(data, x, tmp_path)
    assert_same(ours, device, "the host C build")


def qemu_model() -> bytes:
    """TRANSPOSE_CONV -> every resize (the family in one image: two QEMU builds in all)."""
    in_q = QuantParams((float(F32(0.05)),), (3,))
    q = QuantParams((float(F32(0.1)),), (-5,))
    rng = np.random.default_rng(4)
    layers = [("TRANSPOSE_CONV", dict(padding="SAME", stride_h=2, stride_w=2, activation="NONE"),
               ["s0", "w0", "@", "b0"], {"s0": np.array([1, 8, 10, 6], np.int32),
                                         "w0": rng.standard_normal((6, 4, 4, 7)).astype(F32) * .3,
                                         "b0": rng.standard_normal(6).astype(F32)},
               (1, 8, 10, 6), q)]   # 7 input channels, 6 output: the DSP loops' tails too
    layers[0][3]["w0"][:, 3] = layers[0][3]["w0"][:, :, 3] = 0   # PyTorch k=3 p=1, as lowered
    layers += resize_chain(6, q)
    return tflite_bytes(chain_graph((1, 4, 5, 7), in_q, layers))


@pytest.mark.parametrize("dsp", [True, False], ids=["dsp", "portable"])
def test_qemu_cortex_m4_equals_the_reference(dsp: bool, tmp_path: Path) -> None:
    data = qemu_model()
    x = int8_inputs((1, 4, 5, 7), count=3, seed=9)
    device, run = host_c(data, x, tmp_path, target="qemu-cortex-m4", dsp=dsp)
    assert_same(reference(data, x), device, f"QEMU Cortex-M4 (dsp={dsp})")


# -- end to end ----------------------------------------------------------------------------------
def test_torch_two_exit_model_exports_int8(tmp_path: Path) -> None:
    """A conv backbone with upsampling (nearest and both bilinear modes) and a
    ConvTranspose, two exits, default torch.onnx.export, then export_onnx --int8."""
    import torch
    import torch.nn.functional as F

    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.inputs import device_samples
    from eedge.codegen.model_source import load_codegen_model
    from eedge.export import export_onnx
    from eedge.ir.bundle import load_bundle
    from eedge.targets import load_target

    class TwoExits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 3, stride=2, padding=1)
            self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")
            self.conv2 = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1)
            self.head1 = torch.nn.Linear(8 * 4 * 4, 5)
            self.deconv = torch.nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1,
                                                   output_padding=1)
            self.conv3 = torch.nn.Conv2d(6, 4, 3, stride=2, padding=1)
            self.head2 = torch.nn.Linear(4 * 4 * 4, 5)
            self.act = torch.nn.LeakyReLU(0.1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.act(self.conv1(x))                      # 4x4
            h = self.act(self.conv2(self.up(h)))             # 8x8 -> 4x4
            exit1 = self.head1(h.flatten(1))
            g = F.relu(self.deconv(h))                       # 8x8
            g = F.interpolate(g, scale_factor=2, mode="bilinear", align_corners=False)
            g = self.act(self.conv3(g))                      # 16x16 -> 8x8
            g = F.interpolate(g, size=(4, 4), mode="bilinear", align_corners=True)
            return exit1, self.head2(g.flatten(1))

    torch.manual_seed(0)
    model = TwoExits().eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path))
    resizes = [n for n in onnx.load(path).graph.node if n.op_type == "Resize"]
    attrs = [{a.name: helper.get_attribute_value(a).decode() for a in n.attribute
              if a.name in ("mode", "coordinate_transformation_mode", "nearest_mode")}
             for n in resizes]
    assert attrs == [TORCH_NEAREST, TORCH_BILINEAR, TORCH_ALIGNED]
    calibration = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(F32)
    out = tmp_path / "bundle"
    export_onnx(path, out, int8=True, calibration=calibration, force=True)
    bundle = load_bundle(out)
    assert len(bundle.stages) == 2
    ops = set()
    for stage in bundle.stages:
        graph, _ = read_tflite_bytes(bundle.file(stage["files"]["tflite_int8"]).read_bytes())
        ops |= {n.op_type for n in graph.nodes}
    assert {"RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "TRANSPOSE_CONV"} <= ops
    checks = bundle.manifest["verification"]["tflite_int8"]   # export's own checks passed
    assert checks["reference_vs_tflm"]["identical"] and checks["staged_vs_monolithic"]["identical"]
    # the generated C (host build) gives the reference's bytes at every stage output
    model = load_codegen_model(out)
    run = run_on_target(model, load_target("host"), calibration[:20])
    samples = device_samples(calibration[:20], tuple(model.graph.tensors[model.input].shape),
                             model.input_quant.scale[0], model.input_quant.zero_point[0],
                             model.input_layout)
    env = execute(model.graph, {model.input: samples.reshape(
        (20,) + tuple(model.graph.tensors[model.input].shape[1:]))})
    compared = 0
    for n, sample in enumerate(run.run.samples):
        for stage, outputs in zip(model.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                assert np.array_equal(got, env[name][n].reshape(-1)), (n, name)
                compared += 1
    assert compared >= 20


def test_an_accumulator_that_can_overflow_is_refused() -> None:
    """The code generator's shared int32 bound, told where TRANSPOSE_CONV keeps its input (2)
    and bias (3): a damaged bias near 2^31 would be signed overflow in the C kernel."""
    from eedge.codegen.emit import check_accumulator

    graph = tc_graph(*CASES[0], scales=SCALES[0])
    node = graph.nodes[0]
    check_accumulator(graph, node, out_axis=0, data=2, bias_index=3)   # a sound model passes
    bias = graph.constants[node.inputs[3]]
    assert bias.dtype == np.int32
    graph.constants[node.inputs[3]] = np.full_like(bias, (1 << 31) - 16)
    with pytest.raises(ModelError, match=r"TRANSPOSE_CONV .op0.: output channel \d+ can "
                                         r"reach \d+ in its int32 accumulator"):
        check_accumulator(graph, node, out_axis=0, data=2, bias_index=3)
