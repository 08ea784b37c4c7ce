"""ONNX members of a cascade that also has ``.tflite`` members: lowered to TFLite's IR.

A ``.tflite`` member can only be merged at the IR level, in the TFLite dialect
(NHWC), so the ONNX and torch members of such a cascade are imported and
lowered to TFLite operators one by one, exactly as ``eedge export`` lowers
any ONNX model, and the cascade becomes a TFLite-only bundle whose input is
in TFLite's layout (NHWC). The member's reference (ONNX Runtime on the user's
file) then takes that layout back to the model's own before running.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eedge.cascade.members import Member
from eedge.errors import ModelError


def lower_member(member: Member) -> Member:
    """``member`` (onnx/torch) as a float tflite-dialect graph with an NHWC-side reference."""
    from eedge.export import _batch_first_handoffs, fixed_batch
    from eedge.frontends.onnx_frontend import import_onnx
    from eedge.passes.lower_tflite import lower_to_tflite

    imported = import_onnx(member.onnx_model, name=member.name)  # type: ignore[arg-type]
    if len(imported.graph.exits) != 1:
        raise ModelError(f"cascade member {member.name} has {len(imported.graph.exits)} "
                         "outputs; a member returns one logits tensor")
    graph, twin = _batch_first_handoffs(imported)
    lowered = lower_to_tflite(graph) if twin is None else fixed_batch(lower_to_tflite(twin))
    rank = len(lowered.inputs[0].shape)
    reference = member.reference

    def channels_first_reference(x: np.ndarray) -> np.ndarray:
        return reference(_to_channels_first(x, rank))

    stripped = imported.stripped_exits[0].op_type if imported.stripped_exits else None
    return replace(member, graph=lowered, reference=channels_first_reference,
                   stripped=stripped)


def _to_channels_first(x: np.ndarray, rank: int) -> np.ndarray:
    """NHWC → NCHW (NLC → NCL): the lowering's input layout back to the ONNX model's."""
    if rank == 4:
        return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
    if rank == 3:
        return np.ascontiguousarray(np.transpose(x, (0, 2, 1)))
    return x
