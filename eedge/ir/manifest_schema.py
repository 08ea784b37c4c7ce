"""JSON Schema of ``manifest.json``, the contract between every eedge command.

Bump ``SCHEMA_VERSION`` on any incompatible change; readers refuse versions
they do not know instead of guessing.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

_FILE_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DIM = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}]}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "dtype", "bytes_per_sample"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "shape": {"type": "array", "items": _DIM},
        "dtype": {"type": "string"},
        "bytes_per_sample": {"type": "integer", "minimum": 0},
        "layout": {"type": "string"},
    },
}
_POLICY = {
    "type": "object",
    "required": ["criterion", "threshold"],
    "properties": {
        "criterion": {"enum": ["max_softmax", "margin", "entropy"]},
        "window_low": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 0,
                                                    "maximum": 1}]},
        "threshold": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 0,
                                                   "maximum": 1}]},
        "method": {"type": "string"},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "eedge_version", "model", "inputs", "stages", "exits",
                 "split", "files", "verification"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "eedge_version": {"type": "string"},
        "model": {
            "type": "object",
            "required": ["name", "source_format", "source_sha256", "opset", "file"],
            "properties": {
                "name": {"type": "string"},
                "source_format": {"enum": ["onnx", "torch", "tflite"]},
                "source_sha256": _SHA256,
                "opset": {"type": "integer"},
                "file": _FILE_NAME,
                "files": {"type": "object", "additionalProperties": _FILE_NAME},
                "macs": {"type": "integer", "minimum": 0},
            },
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "stages": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["index", "name", "files", "inputs", "outputs", "exit", "macs",
                             "param_bytes", "handoff_bytes_per_sample"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "name": {"type": "string"},
                    "side": {"enum": [None, "head", "tail"]},
                    "files": {"type": "object", "minProperties": 1,
                              "propertyNames": {"anyOf": [
                                  {"enum": ["onnx", "tflite", "tflite_int8"]},
                                  {"pattern": "^tvm_[a-z0-9_]+$"}]},
                              "additionalProperties": _FILE_NAME},
                    "io": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["inputs", "outputs"],
                        "properties": {"inputs": {"type": "array", "items": _TENSOR},
                                       "outputs": {"type": "array", "minItems": 1,
                                                   "items": _TENSOR}}}},
                    "inputs": {"type": "array", "items": _TENSOR},
                    "outputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                    "exit": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0}]},
                    "macs": {"type": "integer", "minimum": 0},
                    "param_bytes": {"type": "integer", "minimum": 0},
                    "handoff_bytes_per_sample": {"type": "integer", "minimum": 0},
                },
            },
        },
        "exits": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["index", "stage", "tensor", "num_classes", "cumulative_macs",
                             "policy"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "stage": {"type": "integer", "minimum": 0},
                    "tensor": {"type": "string"},
                    "num_classes": {"type": "integer", "minimum": 1},
                    "cumulative_macs": {"type": "integer", "minimum": 0},
                    "policy": _POLICY,
                },
            },
        },
        "split": {
            "anyOf": [{"type": "null"}, {
                "type": "object",
                "required": ["requested", "head_stages", "tail_stages", "cut_tensors",
                             "cut_bytes_per_sample"],
                "properties": {
                    "requested": {"type": "string"},
                    "head_stages": {"type": "array", "items": {"type": "integer"}},
                    "tail_stages": {"type": "array", "items": {"type": "integer"}},
                    "cut_tensors": {"type": "array", "items": _TENSOR},
                    "cut_bytes_per_sample": {"type": "integer", "minimum": 0},
                },
            }],
        },
        "verification": {"type": "object"},
        "quantization": {"type": "object"},
        "calibration": {"type": "object"},
        "ensemble": {"type": "object", "required": ["members", "aggregation"],
                     "properties": {"members": {"type": "array", "minItems": 2,
                                                "items": {"type": "integer", "minimum": 0}},
                                    "aggregation": {"const": "mean_softmax"},
                                    "monitor": {"anyOf": [{"type": "null"}, {
                                        "type": "object", "required": ["window", "rho"],
                                        "properties": {
                                            "window": {"type": "integer", "minimum": 1},
                                            "rho": {"type": "number", "minimum": 0,
                                                    "maximum": 1}}}]}}},
        "tvm": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["version", "target"],
            "properties": {"version": {"type": "string"}, "target": {"type": "string"}}}},
        "memory": {"type": "object", "required": ["arena_bytes"],
                   "properties": {"arena_bytes": {"type": "integer", "minimum": 0}}},
        "files": {
            "type": "object", "minProperties": 1,
            "propertyNames": _FILE_NAME,
            "additionalProperties": {
                "type": "object", "required": ["sha256", "bytes"],
                "properties": {"sha256": _SHA256, "bytes": {"type": "integer", "minimum": 0}},
            },
        },
    },
}
