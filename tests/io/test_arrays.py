"""User arrays are loaded without unpickling and with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eedge.errors import InputDataError
from eedge.io.arrays import load_array, load_labelled


def test_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones(3))
    np.savez(tmp_path / "b.npz", x=np.zeros(2), y=np.array([1, 0]))
    assert load_array(tmp_path / "a.npy").shape == (3,)
    x, y = load_labelled(tmp_path / "b.npz")
    assert x.shape == (2,) and y.tolist() == [1, 0]


def test_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "b.npz", inputs=np.zeros(2))
    with pytest.raises(InputDataError, match="no array 'x'"):
        load_array(tmp_path / "b.npz")
    (tmp_path / "t.npy").write_text("hello")
    with pytest.raises(InputDataError, match="not a .npy"):
        load_array(tmp_path / "t.npy")
    np.savez(tmp_path / "c.npz", x=np.zeros(3), y=np.array([0.5, 1, 2]))
    with pytest.raises(InputDataError, match="integer"):
        load_labelled(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros(3), y=np.array([0, 1]))
    with pytest.raises(InputDataError, match="3 samples but y has 2"):
        load_labelled(tmp_path / "d.npz")
