"""Read an ONNX model's externally stored weights into the model itself.

torch's default exporter writes ``m.onnx`` plus ``m.onnx.data``; the
tensors in ``m.onnx`` only name a ``location`` relative to the model's
folder. eedge embeds that data once, at the door, so every later step (the
checker, partitioning, the bundle's own files) works on a self-contained
model and never resolves paths against the current directory. A location
is file content chosen by whoever wrote the model, so it is confined to
the model's folder: absolute paths and paths that climb out are refused.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx

from eedge.errors import ModelError
from eedge.frontends.onnx_tensors import expected_bytes, graph_tensors


def uses_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph_tensors(model.graph))


def _data_file(location: str, tensor: str, model_dir: Path) -> Path:
    """The file ``location`` names, provided it stays inside ``model_dir``."""
    if not location:
        raise ModelError(f"tensor {tensor!r} is stored externally but names no file; export "
                         "the model again")
    if "\x00" in location:
        raise ModelError(f"tensor {tensor!r} names its data file with a NUL character; the "
                         "model file is corrupted")
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() \
            or PureWindowsPath(location).drive:
        raise ModelError(f"tensor {tensor!r} stores its data at the absolute path "
                         f"{location!r}; eedge reads external data only from the model's "
                         "folder: save the model with a relative data file")
    folder = model_dir.resolve()
    path = (folder / location).resolve()
    if not path.is_relative_to(folder):
        raise ModelError(f"tensor {tensor!r} stores its data at {location!r}, outside the "
                         "model's folder; keep the data file next to the model")
    if not path.is_file():
        raise ModelError(f"the model's weights are stored in {location!r} next to the model, "
                         "but that file does not exist: copy it along with the .onnx file "
                         "(torch.onnx.export writes both)")
    return path


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    return expected_bytes(tensor)  # unknown types and absurd dims are a ModelError


def embed_external_data(model: onnx.ModelProto, model_dir: Path) -> None:
    """Replace every external tensor reference in ``model`` by the bytes it names."""
    for tensor in graph_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not isinstance(location, str):  # protobuf hands back bytes that are not UTF-8
            raise ModelError(f"tensor {tensor.name!r} names its data file with bytes that are "
                             "not UTF-8; the model file is corrupted")
        path = _data_file(location, tensor.name, model_dir)
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise ModelError(f"tensor {tensor.name!r} has a malformed external data offset "
                             "or length; export the model again") from None
        size = path.stat().st_size
        if offset < 0 or offset > size or (length is not None and
                                           (length < 0 or offset + length > size)):
            raise ModelError(f"tensor {tensor.name!r} lies outside {path.name} "
                             f"({size} bytes); the data file is truncated or belongs to "
                             "another export")
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length if length is not None else size - offset)
        expected = _expected_bytes(tensor)
        if expected is not None and len(data) != expected:
            raise ModelError(f"tensor {tensor.name!r} needs {expected} bytes but {path.name} "
                             f"holds {len(data)} for it; the data file belongs to another "
                             "export")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
