"""Corrupted digits for uncertainty tests, made locally (no downloads).

Four corruption kinds at severities 1..5, applied to images in [0, 1] of shape
(N, 1, H, W): Gaussian noise, blur, occlusion (a zeroed square) and a shift.
Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

KINDS = ("noise", "blur", "occlusion", "shift")


def corrupt(x: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    if kind not in KINDS or not 1 <= severity <= 5:
        raise ValueError(f"kind must be one of {KINDS} and severity 1..5")
    rng = np.random.default_rng(seed)
    out = np.array(x, dtype=np.float32, copy=True)
    h, w = out.shape[-2:]
    if kind == "noise":
        out += rng.normal(0.0, 0.08 * severity, out.shape).astype(np.float32)
    elif kind == "blur":
        kernel = np.ones(2 * ((severity + 1) // 2) + 1, np.float32)
        kernel /= kernel.sum()
        for axis in (-1, -2):
            out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, out)
    elif kind == "occlusion":
        size = 1 + severity
        for i in range(len(out)):
            top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            out[i, ..., top:top + size, left:left + size] = 0.0
    else:
        dy, dx = rng.integers(-severity, severity + 1, size=(2, len(out)))
        for i in range(len(out)):
            out[i] = np.roll(out[i], (int(dy[i]) // 2, int(dx[i]) // 2), axis=(-2, -1))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def corrupted_suite(x: np.ndarray, severities: tuple[int, ...] = (1, 3, 5),
                    seed: int = 0) -> dict[str, np.ndarray]:
    """{'noise-3': images, ...} for every kind and severity."""
    return {f"{kind}-{s}": corrupt(x, kind, s, seed) for kind in KINDS for s in severities}
