"""Check every tensor stored in an ONNX model before anything decodes it.

``onnx.checker`` refuses raw data that is too short for a tensor's dims but
not data that is too long, dims that overflow, or element types numpy does
not know; ``numpy_helper.to_array`` then fails with ``cannot reshape`` or
``buffer size must be a multiple of element size`` deep inside shape
inference. The model file is user input, so each tensor's type, dims and
byte count are checked once, at import, and a mismatch is one ModelError.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import helper, numpy_helper

from eedge.errors import ModelError

# far beyond any model eedge targets (2^31 elements of float32 is 8 GiB)
MAX_ELEMENTS = 1 << 31


def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and the tensors in node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from graph_tensors(sub)


def _where(tensor: onnx.TensorProto) -> str:
    return f"tensor {tensor.name[:80]!r}" if tensor.name else "a constant tensor"


def element_count(tensor: onnx.TensorProto) -> int:
    """The product of the dims, refusing negative or absurd ones (Python ints: no wrap)."""
    count = 1
    for d in tensor.dims:
        if d < 0:
            raise ModelError(f"{_where(tensor)} has a negative dimension {d}; the model file "
                             "is corrupted")
        count *= d
    if count > MAX_ELEMENTS:
        raise ModelError(f"{_where(tensor)} declares {count} elements (dims "
                         f"{list(tensor.dims)[:8]}); the model file is corrupted")
    return count


def numpy_dtype(tensor: onnx.TensorProto) -> np.dtype | None:
    """The element type (None for strings); an unknown type code is a ModelError."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{_where(tensor)} has element type {tensor.data_type}, which ONNX "
                         "does not define; the model file is corrupted") from None


def expected_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes of raw data the tensor's dims and type need (None for strings)."""
    dtype = numpy_dtype(tensor)
    count = element_count(tensor)
    return None if dtype is None else count * dtype.itemsize


def check_tensor_data(model: onnx.ModelProto) -> None:
    """Every embedded tensor decodes to exactly its dims (external ones are checked on load)."""
    for tensor in graph_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        expected = expected_bytes(tensor)
        if tensor.HasField("raw_data") and expected is not None:
            if len(tensor.raw_data) != expected:
                raise ModelError(f"{_where(tensor)} holds {len(tensor.raw_data)} bytes of data "
                                 f"but its dims {list(tensor.dims)[:8]} and type need "
                                 f"{expected}; the model file is corrupted")
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as exc:  # typed fields of the wrong length, bad encodings
            raise ModelError(f"{_where(tensor)} cannot be decoded ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); the model file is corrupted") from None
        if values.dtype.kind in "fc" and np.isnan(values).any():
            raise ModelError(f"{_where(tensor)} holds NaN values; the model's weights are "
                             "broken (check the training run or the file)")
    _check_infinite_initializers(model.graph)


def _check_infinite_initializers(graph: onnx.GraphProto) -> None:
    """inf is a weight only as a Clip bound (clamp without a limit); anywhere else it is broken."""
    bounds = {name for node in graph.node if node.op_type == "Clip" for name in node.input[1:]}
    for tensor in graph.initializer:
        if tensor.name in bounds or tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind in "fc" and np.isinf(values).any():
            raise ModelError(f"{_where(tensor)} holds infinite values; the model's weights are "
                             "broken (check the training run or the file)")


def _check_strings(message: Message, depth: int = 0) -> None:
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            for text in (value if field.label == FieldDescriptor.LABEL_REPEATED else [value]):
                if not isinstance(text, str):
                    raise UnicodeDecodeError("utf-8", bytes(text), 0, 1, "not text")
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 64:
            items = value if field.label == FieldDescriptor.LABEL_REPEATED else [value]
            for item in items:
                _check_strings(item, depth + 1)


def check_text_fields(model: onnx.ModelProto) -> None:
    """Every string field is UTF-8 text (protobuf hands back bytes or raises on access)."""
    try:
        _check_strings(model)
    except UnicodeDecodeError:
        raise ModelError("the ONNX file holds a name or attribute that is not UTF-8 text; the "
                         "file is corrupted: export the model again") from None
