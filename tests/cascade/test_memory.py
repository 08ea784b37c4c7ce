"""The C runtime's arena for a cascade: the input is read by every member, so it keeps
its bytes until the last member has read it (no tensor of the members before the last is
placed over it; the last member may reuse them once it has read it), and the Python
runtime keeps it in its store until its last reader."""

from __future__ import annotations

from eedge.codegen.byte_chains import fuse_byte_chains
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import plan_for
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from cascade_fixtures import cascade_case  # noqa: F401


def test_input_survives_every_member_in_the_arena(cascade_case) -> None:  # type: ignore[no-untyped-def]
    model = fuse_byte_chains(load_codegen_model(cascade_case.bundle))
    plan = plan_for(model)
    g = model.graph
    start, size = plan.offsets[model.input], g.tensors[model.input].elements_per_sample()
    before_last = [out for stage in model.stages[:-1] for n in stage.nodes
                   for out in g.nodes[n].outputs if out in plan.offsets]
    assert len(before_last) > 4
    for name in before_last:
        offset, length = plan.offsets[name], g.tensors[name].elements_per_sample()
        assert offset + length <= start or start + size <= offset, name
    assert all(model.input in stage.inputs for stage in model.stages)


def test_python_runtime_keeps_the_input_until_the_last_member(cascade_case) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(load_bundle(cascade_case.bundle), runtime="int8-reference")
    assert cascade._last_reader["input"] == len(cascade.stages) - 1


def test_c_runtime_bytes_equal_tflite_micro_for_every_member(cascade_case) -> None:  # type: ignore[no-untyped-def]
    """Every member's int8 output from the generated C (qemu-cortex-m4, every stage run)
    equals TFLite Micro's bytes on that member's stage file."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from device_compare import assert_c_bit_exact

    assert assert_c_bit_exact(cascade_case.bundle, cascade_case.data.x_test[:16]) == 16 * 3
