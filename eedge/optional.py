"""Optional dependencies: a missing one is the user's setup, not a bug in eedge.

torch (the torch frontend, training, the demo), Apache TVM (``eedge compile``) and
tritonclient (Triton config validation) are extras: a wheel install for the firmware
path works without them. When code needing one runs without it, the CLI turns the
``ModuleNotFoundError`` into one line that says what to install.
"""

from __future__ import annotations

from eedge.errors import ToolchainError

INSTALL_HINTS = {
    "torch": "pip install torch==2.13.0 (the CPU build: add --index-url "
             "https://download.pytorch.org/whl/cpu)",
    "tvm": "pip install 'eedge[tvm]'",
    "tvm_ffi": "pip install 'eedge[tvm]'",
    "tritonclient": "pip install 'eedge[split]'",
}


def optional_dependency_error(exc: ModuleNotFoundError) -> ToolchainError | None:
    """The one-line error for a missing optional package, or None if it is not one."""
    top = (exc.name or "").split(".")[0]
    hint = INSTALL_HINTS.get(top)
    if hint is None:
        return None
    return ToolchainError(f"this command needs the Python package {top!r}, which is not "
                          f"installed: {hint}")
