"""Fuzz: crafted ``.npy``/``.npz`` inputs against every command that reads user data.

Each case writes one hostile data file: valid arrays with bad values (NaN,
infinity, 1e39 in float64, huge finite numbers), wrong dtypes (ints, float16,
bool, complex, strings, objects, records), wrong or empty shapes, missing,
extra or bad labels, and broken files (truncated anywhere, flipped bytes,
bad magic, headers claiming huge shapes or another format version, pickles,
zips with non-array or damaged members, trailing bytes). Then ``run`` (ONNX
Runtime and the int8 reference), ``evaluate``, ``calibrate --dry-run``,
``profile --target host --data`` or ``codegen --inputs`` must end in a
one-line error or a normal answer (see harness.py); a NaN reaching --json
output would be an internal error (eedge.strict_json refuses to write it).
"""

from __future__ import annotations

import io
import pickle
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fuzz.digits_bundle import build_digits_bundle
from fuzz.harness import FuzzTally, check_cli_case, seeds

# a numpy warning would be a second stderr line for a CLI user: make it an internal error
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("error::RuntimeWarning")]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("fuzz-data")
    bundle, data = build_digits_bundle(root / "pristine")
    with np.load(data) as archive:
        return root, bundle, archive["x"], archive["y"]


# --- arrays: what a well-formed file could hold -------------------------------------------

def _values(rng: random.Random, x: np.ndarray) -> np.ndarray:
    """x with some entries made non-finite, huge or extreme."""
    x = x.astype(rng.choice([np.float32, np.float64]))
    bad = rng.choice([np.nan, np.inf, -np.inf, 1e39, -1e39, 3e38, 1e30, 1e-45, 0.0, 1e308])
    if x.dtype == np.float32 and abs(bad) > 3.4e38 and np.isfinite(bad):
        bad = np.float32(np.inf)
    flat = x.reshape(-1)
    for _ in range(rng.choice([1, 1, 3, flat.size])):
        flat[rng.randrange(flat.size)] = bad
    return x


def _dtype(rng: random.Random, x: np.ndarray) -> np.ndarray:
    kind = rng.choice(["i1", "u1", "i8", "u8", "f2", "f8", "bool", "c8", "U3", "rec", "obj"])
    if kind == "rec":
        out = np.zeros(x.shape, dtype="f4,i4")
        return out
    if kind == "obj":
        return x.astype(object)
    if kind == "U3":
        return x.astype(str)
    with np.errstate(all="ignore"):
        return (x * rng.choice([1, 100, 1e6])).astype(kind)


def _shape(rng: random.Random, x: np.ndarray) -> np.ndarray:
    n = len(x)
    return rng.choice([
        lambda: x[:0], lambda: x[0], lambda: x[0, 0], lambda: x.reshape(n, 64),
        lambda: x.reshape(n, 8, 8), lambda: x.transpose(0, 2, 3, 1), lambda: x[:, :, :4],
        lambda: x[None], lambda: np.float32(1.0), lambda: x.reshape(-1),
        lambda: np.zeros((n, 1, 8, 8, 1), np.float32), lambda: np.zeros((n, 0, 8, 8)),
        lambda: np.zeros((1 << 12, 1, 8, 8), np.float32),
    ])()


def _labels(rng: random.Random, y: np.ndarray) -> np.ndarray | None:
    return rng.choice([
        lambda: None, lambda: y[:-1], lambda: y.astype(np.float64),
        lambda: np.where(np.arange(len(y)) == 3, rng.choice([10, -1, -5, 10**12]), y),
        lambda: y.astype(np.uint64) + np.uint64(2**63), lambda: y.reshape(-1, 1),
        lambda: y.astype(np.int8), lambda: y.astype(bool), lambda: y.astype(str),
        lambda: np.full(len(y), np.iinfo(np.int64).min), lambda: y[:0],
    ])()


def _arrays(rng: random.Random, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray | None]:
    """Keys and arrays of one crafted .npz (or the x of one .npy)."""
    x, y = x.copy(), y.copy()
    what = rng.choice(["values", "values", "dtype", "shape", "labels", "keys", "valid"])
    arrays: dict[str, np.ndarray | None] = {"x": x, "y": y}
    if what == "values":
        arrays["x"] = _values(rng, x)
    elif what == "dtype":
        arrays["x"] = _dtype(rng, x)
    elif what == "shape":
        arrays["x"] = _shape(rng, x)
    elif what == "labels":
        arrays["y"] = _labels(rng, y)
    elif what == "keys":
        arrays = rng.choice([{"y": y}, {"inputs": x, "y": y}, {"x": x, "labels": y},
                             {"x": x, "y": y, "extra": np.zeros(3), "z": x}, {}])
    return arrays


# --- files: how it is stored, well or badly ------------------------------------------------

def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header(shape: tuple[int, ...], descr: str = "<f4", version: tuple[int, int] = (1, 0)
            ) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (2, 0):
        np.lib.format.write_array_header_2_0(buffer, header)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    data = buffer.getvalue()
    return data[:6] + bytes(version) + data[8:] if version not in ((1, 0), (2, 0)) else data


def _broken(rng: random.Random, data: bytes) -> bytes:
    """A damaged copy of a file's bytes."""
    how = rng.choice(["truncate", "flip", "trail", "magic", "empty"])
    if how == "truncate":
        return data[: rng.randrange(len(data))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(rng.choice([1, 2, 8])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if how == "trail":
        return data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 100])))
    if how == "magic":
        return rng.choice([b"\x93NUMPZ", b"PK\x05\x06", b"GIF89a", b"\x80\x04"]) + data[6:]
    return b""


def _special(rng: random.Random, x: np.ndarray) -> tuple[str, bytes]:
    """Files no np.save writes: lying headers, pickles, odd zips."""
    n = len(x)
    choice = rng.randrange(10)
    if choice == 0:
        shape = rng.choice([(1 << 40, 1 << 40), (10**12, 1, 8, 8), (n, 1, 8, 8), (-1, 8)])
        return "x.npy", _header(shape) + x.tobytes()[: rng.choice([0, 100])]
    if choice == 1:
        return "x.npy", _header((n, 1, 8, 8), version=rng.choice([(3, 0), (2, 0), (9, 9)])) + \
            x.astype("<f4").tobytes()
    if choice == 2:
        return "x.npy", _header((n, 1, 8, 8), descr=rng.choice(["|O", "<U4", "<c8", "|V8",
                                                                  "<M8[s]", "|b1", ">f4"])) + \
            bytes(n * 64 * 8)
    if choice == 3:
        return "x.npz", pickle.dumps({"x": x})
    if choice == 4:
        return "x.npy", pickle.dumps(x)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", rng.choice([zipfile.ZIP_STORED,
                                                  zipfile.ZIP_DEFLATED])) as archive:
        if choice == 5:
            archive.writestr("x.npy", b"not an array at all")
        elif choice == 6:
            archive.writestr("x.npy", _header((1 << 30, 1 << 30)))
        elif choice == 7:
            archive.writestr("x.npy", _npy_bytes(x)[:-5])
        elif choice == 8:
            archive.writestr("x/", b"")
            archive.writestr("x", _npy_bytes(x))
        else:
            archive.writestr("x.npy", _npy_bytes(x))
            archive.writestr("x.npy", _npy_bytes(x[:3]))  # duplicate name
    return "x.npz", buffer.getvalue()


def _craft(rng: random.Random, case: Path, x: np.ndarray, y: np.ndarray) -> tuple[Path, str]:
    """Write one hostile data file into ``case``; return it and what it is."""
    if rng.random() < 0.2:
        name, data = _special(rng, x)
        path = case / name
        path.write_bytes(data)
        return path, f"special {name}"
    arrays = _arrays(rng, x, y)
    npy = rng.random() < 0.25 and arrays.get("x") is not None
    if npy:
        data = _npy_bytes(arrays["x"])  # type: ignore[arg-type]
        name = "x.npy"
    else:
        buffer = io.BytesIO()
        saver = rng.choice([np.savez, np.savez_compressed])
        saver(buffer, **{k: v for k, v in arrays.items() if v is not None})
        data = buffer.getvalue()
        name = "x.npz"
    broken = rng.random() < 0.3
    if broken:
        data = _broken(rng, data)
    path = case / name
    path.write_bytes(data)
    keys = ",".join(k for k, v in arrays.items() if v is not None)
    return path, f"{name}[{keys}]{' broken' if broken else ''}"


def _commands(bundle: Path, case: Path) -> list[Callable[[Path], list[str]]]:
    return [
        lambda f: ["run", str(bundle), "-i", str(f), "--json"],
        lambda f: ["run", str(bundle), "-i", str(f)],
        lambda f: ["run", str(bundle), "-i", str(f), "--runtime", "int8-reference", "--json"],
        lambda f: ["evaluate", str(bundle), "--data", str(f), "--json"],
        lambda f: ["calibrate", str(bundle), "--data", str(f), "--max-accuracy-drop", "0.05",
                   "--dry-run", "--json"],
        lambda f: ["profile", str(bundle), "--target", "host", "--data", str(f), "--repeats",
                   "1", "--warmup", "0", "--json"],
        lambda f: ["codegen", str(bundle), "--target", "qemu-cortex-m4", "--out",
                   str(case / "fw"), "--inputs", str(f), "--json"],
    ]


def test_fuzz_data_files(pristine, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    root, bundle, x, y = pristine
    tally = FuzzTally("data files")
    started = time.perf_counter()
    for index, rng in enumerate(seeds("data")):
        case = root / "cases" / str(index)
        case.mkdir(parents=True)
        path, what = _craft(rng, case, x, y)
        args = rng.choice(_commands(bundle, case))(path)
        code = check_cli_case(capsys, root, case, args, f"case {index} ({what})")
        tally.add(code)
    print(tally.report(), f"in {time.perf_counter() - started:.1f} s")
