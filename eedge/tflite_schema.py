"""The TFLite flatbuffer schema bindings (generated code, object API).

They ship with ``tflite-micro`` (a dependency anyway: its interpreter is the
bit-exact reference). One import site, so a move of the module upstream is
a one-line fix.
"""

from __future__ import annotations

from eedge.errors import ToolchainError

try:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ToolchainError("the TFLite schema bindings are missing: install eedge with its "
                         "default dependencies (pip install tflite-micro)") from exc

__all__ = ["schema"]
