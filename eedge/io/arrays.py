"""Load user arrays (.npy / .npz) without ever unpickling."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eedge.errors import InputDataError


def load_array(path: Path, key: str = "x") -> np.ndarray:
    """Read ``path`` (.npy, or the ``key`` array of an .npz) with allow_pickle=False."""
    if not path.is_file():
        raise InputDataError(f"input file {path} does not exist")
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK\x03\x04"):
        raise InputDataError(f"{path} is not a .npy or .npz file; save inputs with np.save "
                             "or np.savez(path, x=...)")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputDataError(f"{path} holds Python objects (pickled data), which eedge will "
                             "not load; save a numeric array with np.save") from exc
    except Exception as exc:
        raise InputDataError(f"{path} is not a .npy or .npz file ({exc})") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if key not in data.files:
                raise InputDataError(f"{path} has no array {key!r} (it has: "
                                     f"{', '.join(data.files) or 'none'}); store inputs as "
                                     f"np.savez(path, {key}=...)")
            return data[key]
    return data


def load_labelled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an .npz with ``x`` (inputs) and ``y`` (integer labels)."""
    x = load_array(path, "x")
    y = load_array(path, "y")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputDataError(f"{path}: y must be a 1-D integer array of class labels, got "
                             f"shape {list(y.shape)} dtype {y.dtype}")
    if len(x) != len(y):
        raise InputDataError(f"{path}: x has {len(x)} samples but y has {len(y)} labels")
    return x, y
