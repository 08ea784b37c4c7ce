"""Gather what the code generator needs: one int8 graph, its stages and exits.

From a bundle, the graph is assembled from the int8 stage files themselves
(the files export verified and checksummed), so the firmware runs exactly
what was checked. From a plain ``.tflite``, the graph is read and
partitioned by its exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError, ModelError
from eedge.frontends.tflite_frontend import load_tflite, read_tflite_bytes
from eedge.ir.bundle import load_bundle
from eedge.ir.graph import Graph, Node, QuantParams
from eedge.passes.partition import partition


@dataclass
class CodegenStage:
    index: int
    nodes: list[int]
    inputs: list[str]
    outputs: list[str]
    exit_index: int | None


@dataclass
class CodegenModel:
    name: str
    graph: Graph
    stages: list[CodegenStage]
    thresholds: list[float | None]
    source: str
    input_layout: str | None   # layout the user's float inputs come in (NCHW for torch/ONNX)
    criteria: list[str] = field(default_factory=list)
    window_low: list[float | None] = field(default_factory=list)
    exit_costs: list[int] = field(default_factory=list)   # cumulative MACs per exit
    budget: dict[str, Any] | None = None  # {"macs": N, "gain": g}: budget-aware firmware
    ensemble: dict[str, Any] | None = None  # the manifest's ensemble section (QUTE)
    # a split head's cut tensors (`eedge split export`): its last exit is not final; what
    # no exit takes leaves the device as these int8 tensors (kept in the arena to the end)
    handoffs: list[str] = field(default_factory=list)
    # learned gates (eedge.train.gates): per exit, the exit tensor's gate column (the one
    # after the classes), None for an exit without one
    gates: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.criteria = self.criteria or ["max_softmax"] * len(self.thresholds)
        self.window_low = self.window_low or [None] * len(self.thresholds)
        self.gates = self.gates or [None] * len(self.thresholds)
        if not self.exit_costs:
            from eedge.passes.cost import total_macs

            running, costs = 0, {}
            for stage in self.stages:
                running += total_macs(self.graph, stage.nodes)
                if stage.exit_index is not None:
                    costs[stage.exit_index] = running
            self.exit_costs = [costs[k] for k in range(len(self.thresholds))]

    @property
    def input(self) -> str:
        return self.graph.inputs[0].name

    @property
    def input_quant(self) -> QuantParams:
        quant = self.graph.inputs[0].quant
        assert quant is not None
        return quant

    def exit_tensor(self, exit_index: int) -> str:
        stage = next(s for s in self.stages if s.exit_index == exit_index)
        return stage.outputs[0]


def load_codegen_model(source: Path, exits: Sequence[str] | None = None) -> CodegenModel:
    """A bundle directory with int8 stages, or an int8 ``.tflite`` file."""
    if source.is_dir():
        return _from_bundle(source)
    if source.suffix != ".tflite":
        raise ModelError(f"{source} is neither a bundle directory nor a .tflite file")
    graph, _ = load_tflite(source, exits)
    _require_int8(graph, str(source))
    part = partition(graph)
    stages = [CodegenStage(s.index, s.nodes, s.inputs, s.outputs, s.exit_index)
              for s in part.stages]
    return CodegenModel(graph.name, graph, stages, [None] * len(graph.exits), source.name, None)


INT8_ONLY = ("every activation must be int8 for the C runtime; export with --int8 --calib "
             "DATA (float inputs/outputs with QUANTIZE/DEQUANTIZE are not supported on the "
             "device)")


def _require_int8(graph: Graph, where: str) -> None:
    """The model's input and exits are int8. Float tensors inside are allowed here: a float
    island between DEQUANTIZE and QUANTIZE may become one table (eedge.codegen.byte_chains);
    the code generator refuses any float tensor that is left after that."""
    if len(graph.inputs) != 1:
        raise ModelError(f"{where}: the C runtime supports single-input models")
    edges = [graph.tensors[t] for t in [graph.inputs[0].name, *graph.exits]]
    if any(t.dtype != "int8" for t in edges):
        raise ModelError(f"{where}: {INT8_ONLY}")


def _from_bundle(path: Path) -> CodegenModel:
    bundle = load_bundle(path)
    manifest = bundle.manifest
    if any("tflite_int8" not in s["files"] for s in bundle.stages):
        raise BundleError(f"{path} has no int8 stages; export it with --int8 --calib DATA")
    nodes: list[Node] = []
    tensors: dict = {}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    stages: list[CodegenStage] = []
    inputs = None
    for stage in bundle.stages:
        graph, outputs = read_tflite_bytes(bundle.file(stage["files"]["tflite_int8"]).read_bytes(),
                                           name=stage["name"])
        rename: dict[str, str] = {}
        for name, value in graph.constants.items():
            new = name
            if name in constants and not np.array_equal(constants[name], value):
                new = f"{stage['name']}/{name}"
            rename[name] = new
            constants[new] = value
            if name in graph.const_quant:
                const_quant[new] = graph.const_quant[name]
        start = len(nodes)
        for node in graph.nodes:
            nodes.append(Node(f"{stage['name']}_{node.name}", node.op_type,
                              [rename.get(t, t) for t in node.inputs], list(node.outputs),
                              dict(node.attrs)))
        for name, info in graph.tensors.items():
            if name in tensors and tensors[name] != info:
                raise BundleError(f"{path}: tensor {name!r} differs between stages; "
                                  "re-export the bundle")
            tensors[name] = info
        if inputs is None:
            inputs = [graph.tensors[t["name"]] for t in manifest["inputs"]
                      if t["name"] in graph.tensors]
        stages.append(CodegenStage(stage["index"], list(range(start, len(nodes))),
                                   [t.name for t in graph.inputs], outputs, stage["exit"]))
    graph = Graph(name=manifest["model"]["name"], inputs=inputs or [], exits=[
        stages[e["stage"]].outputs[0] for e in manifest["exits"]], nodes=nodes,
        constants=constants, tensors=tensors, opset=0, ir_version=0, dialect="tflite",
        const_quant=const_quant)
    _require_int8(graph, str(path))
    thresholds = [e["policy"]["threshold"] for e in manifest["exits"]]
    layout = manifest["inputs"][0].get("layout")
    split = manifest.get("split") or {}
    handoffs = [t["name"] for t in split["cut_tensors"]] if split.get("role") == "head" else []
    missing = [t for t in handoffs if t not in tensors or tensors[t].dtype != "int8"]
    if missing:
        raise BundleError(f"{path}: hand-off {missing[0]!r} is not an int8 tensor of the head's "
                          "stages; re-export the split from an int8 bundle")
    return CodegenModel(graph.name, graph, stages, thresholds, path.name, layout,
                        [e["policy"]["criterion"] for e in manifest["exits"]],
                        [e["policy"].get("window_low") for e in manifest["exits"]],
                        ensemble=manifest.get("ensemble"), handoffs=handoffs,
                        gates=[(e.get("gate") or {}).get("column") for e in manifest["exits"]])
