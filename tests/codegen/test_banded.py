"""Banded residual joins (eedge/codegen/banded.py): a CONV_2D whose only reader is an ADD
runs a band of output rows at a time, each band added in place into the skip tensor.

Every case builds a small int8 graph (a conv making the skip tensor, a conv chain, the
join), checks which joins the planner bands and that the arena shrinks with no live
overlap, then compares the C bytes with eedge's int8 reference executor on the host and
in QEMU (DSP and portable). Bands are forced small (``BAND_BYTES``) so the shapes give
first, interior and tail bands; one case keeps the default size (bands of 512 elements or
more: the ADD's lookup-table path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from device_compare import assert_c_equals_reference

from eedge.codegen import banded
from eedge.codegen.byte_chains import fuse_byte_chains
from eedge.codegen.model_source import CodegenModel, CodegenStage
from eedge.codegen.project import plan_for, plan_schedule
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo


@dataclass
class Conv:
    out_c: int
    k: int = 3
    stride: int = 1
    padding: str = "SAME"
    dilation: int = 1
    activation: str = "RELU"


class Net:
    """An int8 NHWC graph built node by node (random weights, plausible scales)."""

    def __init__(self, shape: tuple[int, int, int], seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.const_quant: dict[str, QuantParams] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self.input = self.tensor("x", (1, *shape), 0.05, -3)

    def tensor(self, name: str, shape: tuple[int, ...], scale: float, zp: int) -> str:
        self.tensors[name] = TensorInfo(name, shape, "int8", QuantParams((scale,), (zp,)))
        return name

    def conv(self, x: str, spec: Conv, name: str) -> str:
        _, h, w, c = self.tensors[x].shape
        eff = (spec.k - 1) * spec.dilation + 1
        if spec.padding == "SAME":
            oh, ow = -(-h // spec.stride), -(-w // spec.stride)
        else:
            oh, ow = (h - eff) // spec.stride + 1, (w - eff) // spec.stride + 1
        weights = self.rng.integers(-127, 128, (spec.out_c, spec.k, spec.k, c), dtype=np.int8)
        w_scale = tuple(float(s) for s in self.rng.uniform(0.002, 0.006, spec.out_c))
        in_scale = self.tensors[x].quant.scale[0]
        self.constants[f"{name}/w"] = weights
        self.const_quant[f"{name}/w"] = QuantParams(w_scale, (0,) * spec.out_c, 0)
        bias = self.rng.integers(-3000, 3000, spec.out_c).astype(np.int32)
        self.constants[f"{name}/b"] = bias
        self.const_quant[f"{name}/b"] = QuantParams(tuple(in_scale * s for s in w_scale),
                                                    (0,) * spec.out_c, 0)
        out = self.tensor(name, (1, oh, ow, spec.out_c), 0.04 + 0.01 * len(self.nodes),
                          -128 if spec.activation == "RELU" else int(self.rng.integers(-20, 20)))
        self.nodes.append(Node(name, "CONV_2D", [x, f"{name}/w", f"{name}/b"], [out],
                               {"stride_h": spec.stride, "stride_w": spec.stride,
                                "dilation_h": spec.dilation, "dilation_w": spec.dilation,
                                "padding": spec.padding, "activation": spec.activation}))
        return out

    def add(self, a: str, b: str, name: str, activation: str = "RELU") -> str:
        out = self.tensor(name, self.tensors[a].shape, 0.09,
                          -128 if activation == "RELU" else 7)
        self.nodes.append(Node(name, "ADD", [a, b], [out], {"activation": activation}))
        return out

    def model(self, outputs: list[str]) -> CodegenModel:
        g = Graph("banded", [self.tensors[self.input]], outputs[-1:], self.nodes,
                  self.constants, self.tensors, 13, 8, "tflite", self.const_quant)
        stage = CodegenStage(0, list(range(len(self.nodes))), [self.input], outputs, 0)
        return CodegenModel("banded", g, [stage], [None], "test_banded", None)


def residual(shape: tuple[int, int, int], c: int, second: Conv, shortcut: Conv | None = None,
             first: Conv | None = None, activation: str = "RELU", swap: bool = False
             ) -> tuple[CodegenModel, str]:
    """stem -> x; x -> first -> second = y; (shortcut(x) or x) + y: the join (its output)."""
    net = Net(shape)
    x = net.conv(net.input, Conv(c), "stem")
    h = net.conv(x, first or Conv(c), "c1")
    y = net.conv(h, second, "c2")
    skip = net.conv(x, shortcut, "sc") if shortcut else x
    out = net.add(y, skip, "join", activation) if swap else net.add(skip, y, "join", activation)
    return net.model([out]), out


def samples(m: CodegenModel, n: int = 3, seed: int = 1) -> np.ndarray:
    shape = tuple(int(d) for d in m.graph.tensors[m.input].shape[1:])
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape)).astype(np.int8)


def banded_joins(m: CodegenModel) -> list[tuple[str, str]]:
    plan = plan_for(fuse_byte_chains(m))
    assert plan.overlapping_live_pairs() == []
    return [(m.graph.nodes[f.conv].name, m.graph.nodes[f.add].name) for f in plan.fusions]


def arenas(m: CodegenModel) -> tuple[int, int]:
    """(arena banded, arena unbanded)"""
    m = fuse_byte_chains(m)
    return plan_for(m).arena_bytes, plan_schedule(m, []).arena_bytes


def check(m: CodegenModel, targets: tuple[str, ...] = ("host",), n: int = 3) -> None:
    x = samples(m, n)
    for target in targets:
        if target == "qemu":
            for dsp in (True, False):
                assert_c_equals_reference(m, x, "qemu-cortex-m4", dsp)
        else:
            assert_c_equals_reference(m, x, target)


@pytest.fixture
def small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banded, "BAND_BYTES", 40)
    monkeypatch.setattr(banded, "MAX_BANDS", 64)


@pytest.fixture
def band_all(monkeypatch: pytest.MonkeyPatch, small_bands: None) -> None:
    """Every join that can be banded is, so the shapes whose peak lies elsewhere (the stride-2
    blocks: the block input is the largest tensor) test the band arithmetic too."""
    monkeypatch.setattr(banded, "BAND_ALL", True)


CASES = {
    # (input H, W, C), channels, banded conv, shortcut conv
    "3x3 same, 5 channels": ((11, 9, 3), 5, Conv(5, activation="NONE"), None),
    "stride 2 block, 1x1 shortcut": ((14, 10, 4), 6, Conv(6, activation="NONE"),
                                     Conv(6, k=1, stride=2, activation="NONE")),
    "5x5 dilation 2": ((13, 8, 2), 3, Conv(3, k=5, dilation=2, activation="NONE"), None),
    "valid padding, stride 2": ((17, 9, 4), 4, Conv(4, stride=2, padding="VALID"),
                                Conv(4, stride=2, padding="VALID", activation="NONE")),
    "1 channel": ((9, 7, 1), 1, Conv(1, activation="NONE"), None),
}


def _case(name: str) -> tuple[CodegenModel, str]:
    shape, c, second, shortcut = CASES[name]
    first = Conv(c, stride=2) if shortcut and shortcut.stride == 2 and second.stride == 1 else None
    if name == "valid padding, stride 2":
        first = Conv(c, k=1)
    return residual(shape, c, second, shortcut, first)


@pytest.mark.parametrize("name", list(CASES))
def test_joins_are_banded_and_bit_exact_on_the_host(name: str, band_all: None) -> None:
    m, _ = _case(name)
    joins = banded_joins(m)
    assert len(joins) == 1 and joins[0][1] == "join"
    check(m)


@pytest.mark.parametrize("name", ["3x3 same, 5 channels", "5x5 dilation 2", "1 channel"])
def test_identity_blocks_band_because_it_lowers_the_arena(name: str, small_bands: None) -> None:
    """Same-size blocks peak at the join (x, the first conv's output, the second's): the
    planner bands them on its own; the stride-2 blocks' peak is their input, so it does not."""
    m, out = _case(name)
    assert banded_joins(m) == [("c2", "join")]
    with_bands, without = arenas(m)
    assert with_bands < without
    plan = plan_for(fuse_byte_chains(m))
    assert plan.offsets[out] == plan.offsets["stem"]   # the sum written over the skip tensor
    assert "c2" not in plan.offsets                     # the banded conv's output never exists
    assert banded_joins(_case("stride 2 block, 1x1 shortcut")[0]) == []


def test_stride_2_block_bit_exact_in_qemu(band_all: None) -> None:
    m, _ = _case("stride 2 block, 1x1 shortcut")
    assert banded_joins(m)
    check(m, ("qemu",), n=2)


def test_default_bands_use_the_adds_table_and_match_in_qemu() -> None:
    """24x16x8 join: bands of 16 and 8 rows (2048 and 1024 elements: the ADD's lookup
    tables), the conv's output as the ADD's first operand."""
    m, _ = residual((24, 16, 3), 8, Conv(8, activation="NONE"), activation="NONE", swap=True)
    assert banded_joins(m) == [("c2", "join")]
    with_bands, without = arenas(m)
    assert with_bands == without - 3072 + 2048   # a 2048-byte band instead of a 3072-byte tensor
    check(m, ("host", "qemu"))


def test_skip_read_later_is_not_written_over(small_bands: None) -> None:
    """The skip tensor feeds another conv after the join: no band (nothing to gain), and the
    bytes stay right."""
    net = Net((10, 8, 3))
    x = net.conv(net.input, Conv(4), "stem")
    y = net.conv(net.conv(x, Conv(4), "c1"), Conv(4, activation="NONE"), "c2")
    joined = net.add(x, y, "join")
    later = net.conv(x, Conv(4), "later")
    out = net.add(joined, later, "final")
    m = net.model([out])
    assert ("c2", "join") not in banded_joins(m)
    check(m)


def test_conv_with_a_second_reader_is_not_banded(small_bands: None) -> None:
    net = Net((10, 8, 3))
    x = net.conv(net.input, Conv(4), "stem")
    y = net.conv(net.conv(x, Conv(4), "c1"), Conv(4, activation="NONE"), "c2")
    joined = net.add(x, y, "join")
    out = net.add(joined, net.conv(y, Conv(4, k=1), "reads_y"), "final")
    m = net.model([out])
    assert ("c2", "join") not in banded_joins(m)
    check(m)


def test_skip_that_is_the_convs_input_is_not_banded(small_bands: None) -> None:
    """x + conv(x): later bands read rows of x above theirs, so x cannot take the sum."""
    net = Net((10, 8, 3))
    x = net.conv(net.input, Conv(4), "stem")
    out = net.add(x, net.conv(x, Conv(4, activation="NONE"), "c1"), "join")
    m = net.model([out])
    assert banded_joins(m) == []
    check(m)


def test_chained_blocks_and_fused_activations(small_bands: None) -> None:
    """Two identity blocks in a row (the second's skip is the first join's in-place output)
    and a join without activation: both banded, bit-exact on the host and in QEMU."""
    net = Net((12, 10, 3))
    x = net.conv(net.input, Conv(6), "stem")
    y1 = net.conv(net.conv(x, Conv(6), "a1"), Conv(6, activation="NONE"), "a2")
    j1 = net.add(x, y1, "join1", "NONE")
    y2 = net.conv(net.conv(j1, Conv(6), "b1"), Conv(6, activation="NONE"), "b2")
    j2 = net.add(y2, j1, "join2", "RELU")
    m = net.model([j2])
    assert sorted(banded_joins(m)) == [("a2", "join1"), ("b2", "join2")]
    check(m, ("host", "qemu"), n=2)


def test_switch_off_gives_the_unbanded_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = residual((24, 16, 3), 8, Conv(8, activation="NONE"))
    monkeypatch.setattr(banded, "BANDING", False)
    assert banded_joins(m) == []


def test_per_op_profile_times_the_banded_pair_per_node(small_bands: None) -> None:
    """The banded conv and ADD keep one call site each: every band's ticks add up in it,
    and it counts one run per inference (not one per band)."""
    from eedge.profiling.per_op import profile_ops
    from eedge.targets import load_target

    m, _ = residual((11, 9, 3), 5, Conv(5, activation="NONE"))
    assert banded_joins(m) == [("c2", "join")]
    profile = profile_ops(m, load_target("host"), samples(m, 2), repeats=3)
    assert [lb.name for lb in profile.labels] == ["stem", "c1", "c2", "join"]
    assert [lb.op for lb in profile.labels] == ["CONV_2D"] * 3 + ["ADD"]
    assert profile.runs == [12] * 4   # 6 inferences, each run twice (stage by stage, then whole)


def test_tall_tensors_get_at_most_max_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banded, "BAND_BYTES", 40)
    m, _ = residual((40, 4, 3), 4, Conv(4, activation="NONE"))   # 16-byte rows
    fusions = plan_for(fuse_byte_chains(m)).fusions
    assert [f.rows for f in fusions] == [5]   # 40 bytes would be 3 rows, 14 bands; 8 of 5
