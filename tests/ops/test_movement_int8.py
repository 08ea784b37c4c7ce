"""Movement builtins read from .tflite files: int8 reference vs tflite-micro and LiteRT, C runtime.

Each op is written as a single-op int8 file by eedge's writer, read back by
its reader (the round trip keeps op, options and every output, SPLIT's and
UNPACK's included), and run on 256 inputs by eedge's int8 reference, by
tflite-micro (the oracle) and by LiteRT's BUILTIN_REF kernels: all three must
give equal bytes for every output. The ops only move bytes, so TFLM and
LiteRT agree everywhere here (no DESIGN.md exception applies). The same
graphs then run through the generated C on the host, one stage per op.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import CodegenModel, CodegenStage
from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.targets import load_target

I32 = np.int32
SAMPLES = 256
QUANTS = [QuantParams((0.05,), (-3,)), QuantParams((0.0123,), (17,)), QuantParams((1.7,), (-128,))]

# name -> (input shapes, op, constant inputs (None marks an activation), outputs, options)
Case = tuple[list[tuple[int, ...]], str, list[np.ndarray | None], list[tuple[int, ...]],
             dict[str, object]]
CASES: dict[str, Case] = {
    "transpose_4d": ([(1, 3, 4, 5)], "TRANSPOSE", [None, np.array([0, 2, 3, 1], I32)],
                     [(1, 4, 5, 3)], {}),
    "transpose_shuffle_5d": ([(1, 4, 3, 2, 6)], "TRANSPOSE",
                             [None, np.array([0, 1, 2, 4, 3], I32)], [(1, 4, 3, 6, 2)], {}),
    "transpose_5d_other": ([(1, 2, 3, 4, 5)], "TRANSPOSE",
                           [None, np.array([0, 3, 1, 4, 2], I32)], [(1, 4, 2, 5, 3)], {}),
    "slice_4d": ([(1, 5, 6, 8)], "SLICE",
                 [None, np.array([0, 1, 2, 3], I32), np.array([1, 3, -1, 4], I32)],
                 [(1, 3, 4, 4)], {}),
    "slice_int64": ([(1, 5, 6, 8)], "SLICE",
                    [None, np.array([0, 2, 0, 5], np.int64), np.array([-1, 2, 6, -1], np.int64)],
                    [(1, 2, 6, 3)], {}),
    "slice_5d": ([(1, 3, 4, 2, 6)], "SLICE",
                 [None, np.array([0, 1, 0, 1, 2], I32), np.array([-1, 2, 4, 1, 3], I32)],
                 [(1, 2, 4, 1, 3)], {}),
    "strided_slice": ([(1, 7, 6, 9)], "STRIDED_SLICE",
                      [None, np.array([0, -6, 5, 1], I32), np.array([0, 7, 0, -1], I32),
                       np.array([1, 2, -2, 3], I32)],
                      [(1, 3, 3, 3)], {"begin_mask": 1, "end_mask": 1, "shrink_axis_mask": 0}),
    "strided_slice_shrink": ([(1, 4, 6, 8)], "STRIDED_SLICE",
                             [None, np.array([0, 2, 0, 1], I32), np.array([1, 3, 6, 8], I32),
                              np.array([1, 1, 2, 2], I32)],
                             [(1, 3, 4)], {"begin_mask": 0, "end_mask": 4,
                                           "shrink_axis_mask": 2}),
    "split": ([(1, 4, 4, 12)], "SPLIT", [np.array(3, I32), None],
              [(1, 4, 4, 4)] * 3, {"num_splits": 3}),
    "split_h": ([(1, 6, 4, 5)], "SPLIT", [np.array(-3, I32), None],
                [(1, 3, 4, 5)] * 2, {"num_splits": 2}),
    "split_v": ([(1, 4, 4, 12)], "SPLIT_V", [None, np.array([5, -1, 4], I32), np.array(3, I32)],
                [(1, 4, 4, 5), (1, 4, 4, 3), (1, 4, 4, 4)], {"num_splits": 3}),
    "pack": ([(1, 3, 5)] * 3, "PACK", [None, None, None], [(1, 3, 3, 5)],
             {"values_count": 3, "axis": 2}),
    "pack_last": ([(1, 4, 2)] * 2, "PACK", [None, None], [(1, 4, 2, 2)],
                  {"values_count": 2, "axis": -1}),
    "unpack": ([(1, 3, 4, 5)], "UNPACK", [None], [(1, 3, 5)] * 4, {"num": 4, "axis": 2}),
    "squeeze": ([(1, 1, 6, 1, 3)], "SQUEEZE", [None], [(1, 6, 3)], {"squeeze_dims": [1, -2]}),
    "squeeze_dims": ([(1, 1, 6, 1)], "SQUEEZE", [None], [(1, 1, 6)], {"squeeze_dims": [3]}),
    "expand_dims": ([(1, 6, 3)], "EXPAND_DIMS", [None, np.array([-1], I32)], [(1, 6, 3, 1)], {}),
}


def single_op_graph(case: Case, dtype: str = "int8", quant: QuantParams = QUANTS[0]) -> Graph:
    """x0.. -> OP -> y0..: one node, in eedge's TFLite dialect."""
    shapes, op, operands, out_shapes, attrs = case
    q = quant if dtype == "int8" else None
    tensors, constants, inputs, node_inputs = {}, {}, [], []
    xs = iter(shapes)
    for k, value in enumerate(operands):
        if value is None:
            name = f"x{len(inputs)}"
            tensors[name] = TensorInfo(name, next(xs), dtype, q)
            inputs.append(tensors[name])
        else:
            name = f"c{k}"
            constants[name] = value
        node_inputs.append(name)
    outputs = [f"y{k}" for k in range(len(out_shapes))]
    for name, shape in zip(outputs, out_shapes):
        tensors[name] = TensorInfo(name, shape, dtype, q)
    node = Node(op.lower(), op, node_inputs, outputs, dict(attrs))
    return Graph(name=op.lower(), inputs=inputs, exits=outputs, nodes=[node],
                 constants=constants, tensors=tensors, opset=0, ir_version=0, dialect="tflite")


def write(graph: Graph) -> bytes:
    return graph_to_tflite(graph, [0], [i.name for i in graph.inputs], graph.exits)


def feeds(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for info in graph.inputs:
        shape = (SAMPLES,) + tuple(info.shape[1:])
        if info.dtype == "int8":
            out[info.name] = rng.integers(-128, 128, shape, dtype=np.int8)
            out[info.name].reshape(SAMPLES, -1)[:, 0] = np.arange(-128, 128, dtype=np.int8)
        else:
            out[info.name] = rng.standard_normal(shape).astype(np.float32)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_writer_and_reader_round_trip(name: str) -> None:
    graph = single_op_graph(CASES[name])
    read, outputs = read_tflite_bytes(write(graph))
    node, = read.nodes
    assert (node.op_type, node.attrs, len(node.outputs)) == (
        graph.nodes[0].op_type, graph.nodes[0].attrs, len(graph.nodes[0].outputs))
    assert outputs == graph.exits
    assert [read.tensors[t].shape for t in outputs] == [graph.tensors[t].shape for t in outputs]


@pytest.mark.parametrize("quant", QUANTS, ids=["q0", "q1", "q2"])
@pytest.mark.parametrize("name", list(CASES))
def test_int8_reference_equals_tflm_and_litert_ref(name: str, quant: QuantParams) -> None:
    data = write(single_op_graph(CASES[name], quant=quant))
    graph, outputs = read_tflite_bytes(data)
    x = feeds(graph, seed=len(name))
    arrays = [x[i.name] for i in graph.inputs]
    env = execute(graph, x)
    tflm = TFLMModel(data, len(outputs)).run(arrays)
    litert = LiteRTModel(data, reference=True).run(arrays)
    for k, out in enumerate(outputs):
        ours = env[out]
        assert ours.dtype == np.int8 and ours.shape == (SAMPLES,) + graph.tensors[out].shape[1:]
        assert np.array_equal(ours, tflm[k].reshape(ours.shape)), f"{out} differs from TFLM"
        assert np.array_equal(ours, litert[k].reshape(ours.shape)), f"{out} differs from LiteRT"


@pytest.mark.parametrize("name", list(CASES))
def test_float_kernel_equals_litert(name: str) -> None:
    data = write(single_op_graph(CASES[name], dtype="float32"))
    graph, outputs = read_tflite_bytes(data)
    x = feeds(graph, seed=1)
    env = execute(graph, x)
    litert = LiteRTModel(data, reference=False).run([x[i.name] for i in graph.inputs])
    for k, out in enumerate(outputs):
        assert np.array_equal(env[out], litert[k].reshape(env[out].shape))


def _graph_with(name: str, change: Callable[[Graph], None]) -> bytes:
    graph = single_op_graph(CASES[name])
    change(graph)
    return write(graph)


def test_reader_refuses_an_output_with_other_quantization() -> None:
    def requantize(g: Graph) -> None:
        g.tensors["y1"] = TensorInfo("y1", g.tensors["y1"].shape, "int8", QUANTS[1])
    with pytest.raises(ModelError, match="same scale and zero point"):
        read_tflite_bytes(_graph_with("split", requantize))


def test_reader_checks_every_output_shape() -> None:
    def widen(g: Graph) -> None:
        g.tensors["y2"] = TensorInfo("y2", (1, 4, 4, 5), "int8", QUANTS[0])
    with pytest.raises(ModelError, match="output 'y2' as \\[1, 4, 4, 4\\]"):
        read_tflite_bytes(_graph_with("split", widen))


def test_reader_refuses_int64_indices_tflm_would_read_as_int32() -> None:
    def widen(g: Graph) -> None:
        g.constants["c1"] = g.constants["c1"].astype(np.int64)
    with pytest.raises(ModelError, match="int32"):
        read_tflite_bytes(_graph_with("transpose_4d", widen))
    # SLICE reads int64 begin and size itself (TFLM switches on their type)
    read_tflite_bytes(_graph_with("slice_4d", lambda g: g.constants.update(
        c1=g.constants["c1"].astype(np.int64), c2=g.constants["c2"].astype(np.int64))))


def test_reader_refuses_ops_on_the_batch_axis() -> None:
    def batch(g: Graph) -> None:
        g.constants["c1"] = np.array([1, 0, 2, 3], I32)
        g.tensors["y0"] = TensorInfo("y0", (5, 1, 3, 4), "int8", QUANTS[0])
    with pytest.raises(UnsupportedOpError, match="batch"):
        read_tflite_bytes(_graph_with("transpose_4d", batch))


def host_model(names: list[str]) -> CodegenModel:
    """One int8 graph running every case, two per stage, in one C build.

    Case k cuts its input from the flat input x with SLICE and RESHAPE,
    runs the case's op and hands out its outputs; the last stage ends in a
    (1, classes) exit, as the firmware's exit logic needs.
    """
    width = 1024
    q = QUANTS[1]
    tensors = {"x": TensorInfo("x", (1, width), "int8", q)}
    nodes: list[Node] = []
    constants: dict[str, np.ndarray] = {}
    stages = []
    for k, name in enumerate(names):
        shapes, op, operands, out_shapes, attrs = CASES[name]
        first = len(nodes)
        size = int(np.prod(shapes[0]))
        constants[f"s{k}b"], constants[f"s{k}n"] = np.array([0, k], I32), np.array([1, size], I32)
        constants[f"s{k}shape"] = np.array(shapes[0], I32)
        tensors[f"s{k}flat"] = TensorInfo(f"s{k}flat", (1, size), "int8", q)
        tensors[f"s{k}x"] = TensorInfo(f"s{k}x", shapes[0], "int8", q)
        nodes.append(Node(f"cut{k}", "SLICE", ["x", f"s{k}b", f"s{k}n"], [f"s{k}flat"], {}))
        nodes.append(Node(f"shape{k}", "RESHAPE", [f"s{k}flat", f"s{k}shape"], [f"s{k}x"], {}))
        ins = []
        for j, value in enumerate(operands):
            constants[f"s{k}c{j}"] = value if value is not None else np.zeros(0)
            ins.append(f"s{k}x" if value is None else f"s{k}c{j}")
        outs = [f"s{k}y{j}" for j in range(len(out_shapes))]
        for o, shape in zip(outs, out_shapes):
            tensors[o] = TensorInfo(o, shape, "int8", q)
        nodes.append(Node(name, op, ins, outs, dict(attrs)))
        if k % 2:  # two cases per stage: the runtime has 16 stage counters
            stages[-1].nodes += list(range(first, len(nodes)))
            stages[-1].outputs += outs
        else:
            stages.append(CodegenStage(len(stages), list(range(first, len(nodes))), ["x"],
                                       list(outs), None))
    constants = {n: v for n, v in constants.items() if v.size}
    constants["flat"] = np.array([1, width], I32)
    tensors["logits"] = TensorInfo("logits", (1, width), "int8", q)
    nodes.append(Node("to_logits", "RESHAPE", ["x", "flat"], ["logits"], {}))
    stages.append(CodegenStage(len(stages), [len(nodes) - 1], ["x"], ["logits"], 0))
    graph = Graph(name="movement", inputs=[tensors["x"]], exits=["logits"], nodes=nodes,
                  constants=constants, tensors=tensors, opset=0, ir_version=0, dialect="tflite")
    return CodegenModel("movement", graph, stages, [None], "test", None)


def assert_device_equals_reference(model: CodegenModel, run_samples: list, x: np.ndarray) -> None:
    env = execute(model.graph, {"x": x})
    for k, sample in enumerate(run_samples):
        for stage, outputs in zip(model.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                assert np.array_equal(np.asarray(got).reshape(-1), env[name][k].reshape(-1)), \
                    f"sample {k}: {name} differs"


def test_generated_c_equals_the_reference_on_the_host() -> None:
    """Every case in generated C on the host (one build), 200 inputs."""
    model = host_model(list(CASES))
    q = QUANTS[1]
    x = np.random.default_rng(7).integers(-128, 128, (200, 1024), dtype=np.int8)
    as_float = (x.astype(np.float32) - q.zero_point[0]) * np.float32(q.scale[0])
    run = run_on_target(model, load_target("host"), as_float)
    assert_device_equals_reference(model, run.run.samples, x)
