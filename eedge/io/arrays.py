"""Load user arrays (.npy / .npz) without ever unpickling, and check them before use.

A user file is untrusted: its header may claim a shape that would take more
memory than the machine has, its data may be cut short, an .npz member may not
be an array at all, and its values may be NaN or infinite. So the header is
read and checked against the bytes that really follow *before* anything is
allocated, only plain numeric dtypes are accepted (object arrays would need
pickle, structured and string arrays are not model inputs), and every problem
is an :class:`InputDataError` naming the file and the member. numpy's own
``np.load`` answers these with ValueError, AttributeError (a non-.npy member
comes back as bytes) or MemoryError, and calls a truncated file "pickled data".
"""

from __future__ import annotations

import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from eedge.errors import InputDataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
NUMERIC_KINDS = "iuf"   # integers and floats; no bool, complex, strings, objects, records
MAX_HEADER_BYTES = 10_000  # numpy's own limit for untrusted headers
# zip and decompression errors of malformed archives (not bugs in eedge)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               RuntimeError, NotImplementedError, ValueError, OverflowError)


def memory_limit() -> int:
    """Largest array eedge will allocate for user data: half the machine's memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _read_header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from an .npy header, without reading the data."""
    magic = stream.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise InputDataError(f"{where} is not a .npy array; save it with np.save or "
                             "np.savez(path, x=...)")
    version = tuple(stream.read(2))
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=MAX_HEADER_BYTES)
        else:
            raise InputDataError(f"{where} has .npy format version {version}; eedge reads "
                                 "versions 1.0 and 2.0 (np.save writes them)")
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError, KeyError,
            tokenize.TokenError, RecursionError, MemoryError) as exc:  # numpy parses the text
        raise InputDataError(f"{where} has a malformed .npy header ({_first_line(exc)}); "
                             "save it again with np.save") from None
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise InputDataError(f"{where} holds Python objects (pickled data), which eedge will "
                             "not load; save a numeric array with np.save")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in NUMERIC_KINDS:
        raise InputDataError(f"{where} holds {dtype.kind!r}-kind data ({dtype}); eedge reads "
                             "integer or floating-point arrays")
    if any(d < 0 for d in shape):
        raise InputDataError(f"{where} has a negative dimension in its shape {list(shape)}")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _read_npy(stream: IO[bytes], size: int, where: str) -> np.ndarray:
    """The array an .npy stream of ``size`` bytes holds; the header must match the size."""
    shape, fortran, dtype = _read_header(stream, where)
    header = stream.tell()
    claimed = math.prod(shape) * dtype.itemsize
    present = size - header
    if claimed > present:
        raise InputDataError(f"{where} is truncated: its header promises shape {list(shape)} "
                             f"{dtype} ({claimed:,} bytes) but {max(present, 0):,} bytes follow; "
                             "save it again")
    if present > claimed:
        raise InputDataError(f"{where} has {present - claimed:,} bytes after its "
                             f"{list(shape)} {dtype} array: the file is damaged; save it again")
    if claimed > memory_limit():
        raise InputDataError(f"{where} holds {claimed:,} bytes, more than half this machine's "
                             "memory; pass fewer samples")
    buffer = bytearray(claimed)
    view = memoryview(buffer)
    done = 0
    while done < claimed:
        got = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise InputDataError(f"{where} is truncated: {done:,} of {claimed:,} data bytes "
                                 "could be read; save it again")
        done += got
    array = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape))
    return array.reshape(shape, order="F" if fortran else "C")


def _member(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    names = {info.filename: info for info in archive.infolist()}
    return names.get(f"{key}.npy") or names.get(key)


def _npz_keys(archive: zipfile.ZipFile) -> list[str]:
    return [n[:-4] if n.endswith(".npy") else n for n in archive.namelist()]


def _load_npz(path: Path, key: str, required: bool) -> np.ndarray | None:
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member(archive, key)
            if info is None:
                if not required:
                    return None
                keys = ", ".join(repr(k) for k in _npz_keys(archive)[:20]) or "none"
                raise InputDataError(f"{path} has no array {key!r} (it has: {keys}); store "
                                     f"inputs as np.savez(path, {key}=...)")
            where = f"{path} (member {info.filename!r})"
            with archive.open(info) as stream:
                return _read_npy(stream, info.file_size, where)
    except InputDataError:
        raise
    except _ZIP_ERRORS as exc:
        raise InputDataError(f"{path} is not a readable .npz archive ({_first_line(exc)}); "
                             "save it again with np.savez") from None


def _read(path: Path, key: str, required: bool) -> np.ndarray | None:
    if not path.is_file():
        raise InputDataError(f"input file {path} does not exist")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
            if magic == NPY_MAGIC:
                if key != "x":  # an .npy holds only inputs
                    if not required:
                        return None
                    raise InputDataError(f"{path} is an .npy file, which holds only inputs; "
                                         f"pass an .npz with x and {key}: "
                                         f"np.savez(path, x=..., {key}=...)")
                handle.seek(0)
                return _read_npy(handle, path.stat().st_size, str(path))
    except OSError as exc:
        raise InputDataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic.startswith(ZIP_MAGIC):
        return _load_npz(path, key, required)
    raise InputDataError(f"{path} is not a .npy or .npz file; save inputs with np.save "
                         "or np.savez(path, x=...)")


def load_array(path: Path, key: str = "x", finite: bool = True) -> np.ndarray:
    """Read ``path`` (.npy, or the ``key`` array of an .npz) as a numeric array.

    The array must hold at least one sample and, with ``finite`` (inputs to a
    model), no NaN or infinity.
    """
    array = _read(Path(path), key, required=True)
    assert array is not None
    check_samples(array, str(path), key)
    if finite:
        check_finite(array, f"{key} in {path}")
    return array


def load_optional(path: Path, key: str) -> np.ndarray | None:
    """The ``key`` array of an .npz, or None (an .npy, or an .npz without it)."""
    return _read(Path(path), key, required=False)


def check_samples(array: np.ndarray, where: str, key: str = "x") -> None:
    """Refuse an array with no samples (or samples with no values) in one line."""
    if array.ndim == 0:
        raise InputDataError(f"{key} ({where}) is a single number, not an array of samples; "
                             "save the samples (N, ...) with np.save or np.savez")
    if array.size == 0:
        raise InputDataError(f"no samples in {key} ({where}, shape {list(array.shape)}); "
                             "pass at least one sample")


def first_nonfinite(array: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN or infinity in ``array`` (None if all finite or integral)."""
    if array.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))


def check_finite(array: np.ndarray, where: str, source: np.ndarray | None = None) -> None:
    """Raise InputDataError naming the first sample of ``array`` holding NaN or infinity.

    ``source`` is the array before a conversion (e.g. float64 data cast to the
    model's float32): a finite value there that became infinite overflowed.
    """
    index = first_nonfinite(array)
    if index is None:
        return
    value = array[index]
    count = int(np.count_nonzero(~np.isfinite(array)))
    sample = f"sample {index[0]}" if array.ndim > 1 else (
        f"value {index[0]}" if array.ndim == 1 else "the value")
    what = "NaN" if np.isnan(value) else str(float(value))
    before = source[index] if source is not None and source.shape == array.shape else None
    if before is not None and np.isfinite(before):
        what = f"{float(before):g} (beyond {array.dtype}, the model's input type)"
    raise InputDataError(f"{where}: {sample} holds {what} ({count} non-finite value"
                         f"{'s' if count != 1 else ''} in all); eedge refuses non-finite "
                         "inputs: clean or drop those samples")


def load_labelled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an .npz with ``x`` (inputs) and ``y`` (integer labels)."""
    x = load_array(path, "x")
    y = load_array(path, "y", finite=False)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputDataError(f"{path}: y must be a 1-D integer array of class labels, got "
                             f"shape {list(y.shape)} dtype {y.dtype}")
    if len(x) != len(y):
        raise InputDataError(f"{path}: x has {len(x)} samples but y has {len(y)} labels")
    return x, y
