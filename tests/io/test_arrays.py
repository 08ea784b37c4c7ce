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


# --- hostile files (issue 16, item 7): every one is one InputDataError naming the file ---

def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_object_array_is_refused_as_objects(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="o.npy holds Python objects"):
        load_array(tmp_path / "o.npy")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputDataError, match=r"member 'x.npy'.*Python objects"):
        load_array(tmp_path / "o.npz")


def test_truncated_npy_is_called_truncated_not_pickled(tmp_path: Path) -> None:
    data = _npy_bytes(np.zeros((5, 8), np.float32))
    (tmp_path / "t.npy").write_bytes(data[:-7])
    with pytest.raises(InputDataError, match=r"t.npy is truncated.*\[5, 8\] float32") as info:
        load_array(tmp_path / "t.npy")
    assert "pickled" not in str(info.value)
    (tmp_path / "h.npy").write_bytes(data[:20])  # cut inside the header
    with pytest.raises(InputDataError, match="h.npy has a malformed .npy header"):
        load_array(tmp_path / "h.npy")


def test_truncated_and_corrupt_npz_members(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "t.npz", "w") as archive:
        archive.writestr("x.npy", _npy_bytes(np.zeros((4, 3)))[:-10])
    with pytest.raises(InputDataError, match=r"t.npz \(member 'x.npy'\) is truncated"):
        load_array(tmp_path / "t.npz")
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(1000.0))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    raw[60:80] = b"\x00" * 20  # damage the deflated data
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(InputDataError, match="c.npz"):
        load_array(tmp_path / "c.npz")
    full = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(full[: len(full) // 2])
    with pytest.raises(InputDataError, match="cut.npz is not a readable .npz"):
        load_array(tmp_path / "cut.npz")


def test_non_npy_member_is_refused(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.npz", "w") as archive:
        archive.writestr("x.npy", b"just some text, not an array")
    with pytest.raises(InputDataError, match=r"member 'x.npy'\) is not a .npy array"):
        load_array(tmp_path / "m.npz")


def test_huge_shape_header_is_refused_before_allocating(tmp_path: Path) -> None:
    import zipfile

    (tmp_path / "h.npy").write_bytes(_header_with_shape((1 << 40, 1 << 40)))
    with pytest.raises(InputDataError, match=r"h.npy is truncated.*\[1099511627776, "):
        load_array(tmp_path / "h.npy")
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as archive:
        archive.writestr("x.npy", _header_with_shape((1 << 40, 1 << 40)))
    with pytest.raises(InputDataError, match=r"member 'x.npy'\) is truncated"):
        load_array(tmp_path / "h.npz")
    (tmp_path / "n.npy").write_bytes(_header_with_shape((-3, 2)))
    with pytest.raises(InputDataError, match="n.npy"):
        load_array(tmp_path / "n.npy")


def _header_with_shape(shape: tuple[int, ...]) -> bytes:
    """An .npy header (no data) claiming ``shape`` float32."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_strings_structured_and_complex_are_refused(tmp_path: Path) -> None:
    for name, array in (("s", np.array(["a", "b"])), ("r", np.zeros(2, "i4,f4")),
                        ("c", np.ones(2, complex)), ("b", np.ones(2, bool))):
        np.save(tmp_path / f"{name}.npy", array)
        with pytest.raises(InputDataError, match=f"{name}.npy holds .*eedge reads integer"):
            load_array(tmp_path / f"{name}.npy")


def test_no_samples_and_non_finite_values(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 1, 8, 8)), y=np.zeros(0, int))
    with pytest.raises(InputDataError, match=r"no samples in x \(.*e.npz, shape \[0, 1, 8, 8\]"):
        load_array(tmp_path / "e.npz")
    x = np.zeros((4, 3), np.float32)
    x[2, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(InputDataError, match="n.npy: sample 2 holds NaN"):
        load_array(tmp_path / "n.npy")
    assert np.isnan(load_array(tmp_path / "n.npy", finite=False)[2, 1])


def test_extra_bytes_after_the_array_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.npy").write_bytes(_npy_bytes(np.zeros(3)) + b"junk")
    with pytest.raises(InputDataError, match="4 bytes after"):
        load_array(tmp_path / "x.npy")


def test_labels_need_an_npz_and_fortran_order_round_trips(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="only inputs"):
        load_labelled(tmp_path / "x.npy")
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.save(tmp_path / "f.npy", a)
    assert np.array_equal(load_array(tmp_path / "f.npy"), a)
    np.savez_compressed(tmp_path / "z.npz", x=a, y=np.arange(3))
    x, y = load_labelled(tmp_path / "z.npz")
    assert np.array_equal(x, a) and y.tolist() == [0, 1, 2]
