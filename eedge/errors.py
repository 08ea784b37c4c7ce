"""One exception hierarchy for everything a user can get wrong.

The CLI maps each class to its own exit code and prints its message as one
line, so every message must say what is wrong *and* what to do about it.
"""

from __future__ import annotations


class EedgeError(Exception):
    """Base class: an error the user can act on (not a bug in eedge)."""

    exit_code = 1


class ModelError(EedgeError):
    """The model cannot be read, or does not follow the multi-exit contract."""

    exit_code = 3


class UnsupportedOpError(ModelError):
    """The model uses an operator eedge cannot lower to every backend."""


class BundleError(EedgeError):
    """A bundle is missing, malformed, tampered with or of an unknown schema."""

    exit_code = 4


class InputDataError(EedgeError):
    """User data (inputs, labels, shapes, dtypes) does not fit the model."""

    exit_code = 5


class VerificationError(EedgeError):
    """A generated artifact disagrees with its independent reference."""

    exit_code = 6


class TargetError(EedgeError):
    """A target description is invalid or the device cannot be reached."""

    exit_code = 7


class ToolchainError(EedgeError):
    """An external tool (compiler, emulator, runtime) is missing or failed."""

    exit_code = 8
