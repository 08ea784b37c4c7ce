"""The shallow stack used to import TVM's tensor intrinsics agrees with inspect.stack()."""

from __future__ import annotations

import inspect
import sys
import time

import pytest

pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends.tvm_fast_import import (CONTEXT_FRAMES, MODULE,  # noqa: E402
                                            import_tensor_intrinsics, shallow_stack)


def _both(depth: int) -> tuple[list[inspect.FrameInfo], list[inspect.FrameInfo]]:
    if depth:
        return _both(depth - 1)
    return inspect.stack(), shallow_stack()


def test_shallow_stack_keeps_what_tvms_parser_reads() -> None:
    """Every frame (its locals give closure variables) and the innermost source lines
    (TVM reads the third frame's to spot @I.ir_module classes)."""
    full, shallow = _both(5)
    assert len(shallow) == len(full)
    for k, (a, b) in enumerate(zip(full, shallow)):
        assert b.frame is a.frame
        assert (b.filename, b.lineno, b.function) == (a.filename, a.lineno, a.function)
        if k < CONTEXT_FRAMES and a.code_context:
            assert b.code_context == a.code_context and b.index == a.index
        elif k >= CONTEXT_FRAMES:
            assert b.code_context is None


def test_intrinsics_import_registers_tvms_tensor_intrinsics() -> None:
    """Whether or not this worker imported them already, they are there and registered."""
    started = time.monotonic()
    intrinsics = import_tensor_intrinsics()
    assert sys.modules[MODULE] is intrinsics
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin.x86 import VNNI_DOT_16x4_INTRIN

    assert TensorIntrin.get(VNNI_DOT_16x4_INTRIN) is not None
    assert time.monotonic() - started < 60  # minutes with inspect.stack() in a pytest worker
