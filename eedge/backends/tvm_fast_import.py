"""Import TVM's tensor intrinsics (which MetaSchedule needs) in seconds instead of minutes.

MetaSchedule's TuneContext imports ``tvm.s_tir.tensor_intrin``, which parses
about 250 TVMScript functions. TVM's ``@T.prim_func`` calls ``inspect.stack()``
for each, and ``inspect.stack()`` reads the source line of every frame on the
stack, calling ``inspect.getmodule`` (a scan of ``sys.modules``) for frames
without a source file. The cost grows with the stack depth and the number of
loaded modules: measured on this 2-core machine, 47-61 s at the top level of a
process, 50 s under 100 frames, 450-650 s inside a pytest-xdist worker (load
about 5), against 3.5-4.6 s with the stack below.

TVM's parser uses the stack for two things: the frames' locals (closure
variables) and the source line of the third frame (is the function defined in
an ``@I.ir_module`` class?). The stack below keeps every frame and the source
lines of the first few, and leaves the rest out; the 132 registered intrinsics
and the module-level functions came out structurally equal to a plain import.
"""

from __future__ import annotations

import inspect
import linecache
import sys
from typing import Any

MODULE = "tvm.s_tir.tensor_intrin"
CONTEXT_FRAMES = 4  # frames whose source line is read (TVM reads the third)


def shallow_stack(context: int = 1) -> list[inspect.FrameInfo]:
    """``inspect.stack()``, with source lines for the innermost few frames only."""
    frames: list[inspect.FrameInfo] = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        lines = None
        if len(frames) < CONTEXT_FRAMES and context > 0:
            line = linecache.getline(code.co_filename, frame.f_lineno, frame.f_globals)
            lines = [line] if line else None
        frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name,
                                        lines, 0 if lines else None,
                                        positions=None))  # type: ignore[call-arg]
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def import_tensor_intrinsics() -> Any:
    """``tvm.s_tir.tensor_intrin``, imported with the shallow stack (once per process)."""
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    saved = inspect.stack
    inspect.stack = shallow_stack  # type: ignore[assignment]
    try:
        import tvm.s_tir.tensor_intrin as intrinsics
    finally:
        inspect.stack = saved
    return intrinsics
