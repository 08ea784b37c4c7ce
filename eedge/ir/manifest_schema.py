"""JSON Schema of ``manifest.json``, the contract between every eedge command.

Bump ``SCHEMA_VERSION`` on any incompatible change; readers refuse versions
they do not know instead of guessing.

The schema bounds everything a command computes with: integers (a
``num_classes`` of 10^30 must not reach ``np.zeros``), dtypes and layouts
(enumerated, never handed to ``np.dtype`` unchecked), list lengths, string
lengths, and the fields of optional sections that ``eedge inspect`` prints.
Non-finite numbers never get here: the loader refuses NaN and infinities
while parsing. What the schema cannot say (cross-references between stages,
exits and the ensemble; the stage files' own inputs and outputs) is checked
in :mod:`eedge.ir.bundle_check`.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

MAX_DIM = 1 << 24          # the TFLite reader's bound on one dimension
MAX_RANK = 8
MAX_STAGES = 1024          # also bounds exits and indices into either
MAX_TENSORS = 4096         # per list of tensors
MAX_COUNT = 1 << 53        # MACs, bytes: exact in a double, far beyond any model
MAX_TEXT = 4096            # names, methods, versions
# element types eedge's frontends produce (numpy names); anything else is refused
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
LAYOUTS = ("NCHW", "NCL", "NHWC", "NLC")

_INDEX = {"type": "integer", "minimum": 0, "maximum": MAX_STAGES - 1}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_TEXT = {"type": "string", "maxLength": MAX_TEXT}
# names are printed and written into generated C comments and tables: no control characters
_NAME = {"type": "string", "minLength": 1, "maxLength": 1024,
         "pattern": "^[^\\x00-\\x1f\\x7f]*$"}
# the model name becomes a C string literal (codegen), a Triton model directory and a URL
# path segment (split): no control characters, quotes, backslashes or path separators
_MODEL_NAME = {"type": "string", "minLength": 1, "maxLength": 256,
               "pattern": '^[^\\x00-\\x1f\\x7f"\\\\/]+$'}
_FILE_NAME = {"type": "string", "maxLength": 255, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"}
_STAGE_NAME = {**_FILE_NAME, "maxLength": 64}  # eedge names stages (stage0, ...) and their files
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DIM = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_DIM},
                  {"type": "string", "minLength": 1, "maxLength": 64,
                   "pattern": "^[^\\x00-\\x1f\\x7f]*$"}]}
_SHAPE = {"type": "array", "maxItems": MAX_RANK, "items": _DIM}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
# activations (every tensor a manifest describes) are quantized per tensor: one scale and
# zero point, as the runtimes read them
_QUANT = {
    "type": "object",
    "required": ["scale", "zero_point"],
    "properties": {
        "scale": {"type": "array", "minItems": 1, "maxItems": 1,
                  "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e30}},
        "zero_point": {"type": "array", "minItems": 1, "maxItems": 1,
                       "items": {"type": "integer", "minimum": -128, "maximum": 127}},
        "axis": {"anyOf": [{"type": "null"},
                           {"type": "integer", "minimum": 0, "maximum": MAX_RANK - 1}]},
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "dtype", "bytes_per_sample"],
    "properties": {
        "name": _NAME,
        "shape": _SHAPE,
        "dtype": {"enum": list(DTYPES)},
        "bytes_per_sample": _COUNT,
        "layout": {"anyOf": [{"type": "null"}, {"enum": list(LAYOUTS)}]},
        "quant": {"anyOf": [{"type": "null"}, _QUANT]},
    },
}
_TENSORS = {"type": "array", "maxItems": MAX_TENSORS, "items": _TENSOR}
_POLICY = {
    "type": "object",
    "required": ["criterion", "threshold"],
    "properties": {
        "criterion": {"enum": ["max_softmax", "margin", "entropy", "gate"]},
        "window_low": {"anyOf": [{"type": "null"}, _FRACTION]},
        "threshold": {"anyOf": [{"type": "null"}, _FRACTION]},
        "method": {"anyOf": [{"type": "null"}, _TEXT]},
    },
}
_NUMBER = {"type": "number"}
# the parts of optional sections that `eedge inspect` prints (tables.summary_lines)
_FLOAT_CHECK = {"type": "object", "required": ["samples", "max_abs_diff", "tolerance"],
                "properties": {"samples": _COUNT, "max_abs_diff": _NUMBER,
                               "tolerance": _NUMBER}}
_VERIFICATION = {
    "type": "object",
    "properties": {
        "onnx": _FLOAT_CHECK,
        "tflite": _FLOAT_CHECK,
        "tflite_int8": {
            "type": "object", "required": ["staged_vs_monolithic", "reference_vs_tflm"],
            "properties": {
                "staged_vs_monolithic": {"type": "object", "required": ["samples"],
                                         "properties": {"samples": _COUNT}},
                "reference_vs_tflm": {
                    "type": "object", "required": ["tensors_compared"],
                    "properties": {
                        "tensors_compared": _COUNT,
                        "stages": {"type": "array", "maxItems": MAX_STAGES, "items": {
                            "type": "object", "required": ["name", "reference"],
                            "dependentRequired": {"why": ["nodes"]},
                            "properties": {"name": _TEXT, "reference": _TEXT,
                                           "why": _TEXT,
                                           "nodes": {"type": "array", "maxItems": MAX_TENSORS,
                                                     "items": _TEXT}}}}}}}},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "eedge_version", "model", "inputs", "stages", "exits",
                 "split", "files", "verification"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "eedge_version": _TEXT,
        "model": {
            "type": "object",
            "required": ["name", "source_format", "source_sha256", "opset", "file"],
            "properties": {
                "name": _MODEL_NAME,
                "source_format": {"enum": ["onnx", "torch", "tflite"]},
                "source_sha256": _SHA256,
                "opset": {"type": "integer", "minimum": 0, "maximum": 1000},
                "file": _FILE_NAME,
                "files": {"type": "object", "maxProperties": 64,
                          "additionalProperties": _FILE_NAME},
                "macs": _COUNT,
            },
        },
        "inputs": {"type": "array", "minItems": 1, "maxItems": 64, "items": _TENSOR},
        "stages": {
            "type": "array", "minItems": 1, "maxItems": MAX_STAGES,
            "items": {
                "type": "object",
                "required": ["index", "name", "files", "inputs", "outputs", "exit", "macs",
                             "param_bytes", "handoff_bytes_per_sample"],
                "properties": {
                    "index": _INDEX,
                    "name": _STAGE_NAME,
                    "side": {"enum": [None, "head", "tail"]},
                    "files": {"type": "object", "minProperties": 1, "maxProperties": 64,
                              "propertyNames": {"anyOf": [
                                  {"enum": ["onnx", "tflite", "tflite_int8"]},
                                  {"pattern": "^tvm_[a-z0-9_]{1,64}$"}]},
                              "additionalProperties": _FILE_NAME},
                    "io": {"type": "object", "maxProperties": 64, "additionalProperties": {
                        "type": "object", "required": ["inputs", "outputs"],
                        "properties": {"inputs": _TENSORS,
                                       "outputs": {**_TENSORS, "minItems": 1}}}},
                    "inputs": _TENSORS,
                    "outputs": {**_TENSORS, "minItems": 1},
                    "exit": {"anyOf": [{"type": "null"}, _INDEX]},
                    "macs": _COUNT,
                    "param_bytes": _COUNT,
                    "handoff_bytes_per_sample": _COUNT,
                    "nodes": _COUNT,
                },
            },
        },
        "exits": {
            "type": "array", "minItems": 1, "maxItems": MAX_STAGES,
            "items": {
                "type": "object",
                "required": ["index", "stage", "tensor", "num_classes", "cumulative_macs",
                             "policy"],
                "properties": {
                    "index": _INDEX,
                    "stage": _INDEX,
                    "tensor": _NAME,
                    "num_classes": {"type": "integer", "minimum": 1, "maximum": MAX_DIM},
                    "cumulative_macs": _COUNT,
                    "policy": _POLICY,
                    # a learned gate: the exit tensor's column `column` (= num_classes, the
                    # last) is the gate logit; `quant` is the int8 tensor's (scale, zero
                    # point), so gate thresholds become integers
                    "gate": {"type": "object", "required": ["column"],
                             "properties": {"column": {"type": "integer", "minimum": 1,
                                                       "maximum": MAX_DIM},
                                            "quant": {"anyOf": [{"type": "null"}, _QUANT]}}},
                },
            },
        },
        "split": {
            "anyOf": [{"type": "null"}, {
                "type": "object",
                "required": ["requested", "head_stages", "tail_stages", "cut_tensors",
                             "cut_bytes_per_sample"],
                "properties": {
                    "requested": _TEXT,
                    "head_stages": {"type": "array", "maxItems": MAX_STAGES, "items": _INDEX},
                    "tail_stages": {"type": "array", "maxItems": MAX_STAGES, "items": _INDEX},
                    "cut_tensors": _TENSORS,
                    "cut_bytes_per_sample": _COUNT,
                    "role": {"enum": [None, "head", "tail"]},
                    "head_exits": {"type": "integer", "minimum": 0, "maximum": MAX_STAGES},
                },
            }],
        },
        "verification": _VERIFICATION,
        "quantization": {"type": "object",
                         "required": ["scheme", "observer", "calibration_samples"],
                         "properties": {"scheme": _TEXT, "observer": _TEXT,
                                        "calibration_samples": _COUNT}},
        "calibration": {"type": "object"},
        "ensemble": {"type": "object", "required": ["members", "aggregation"],
                     "properties": {"members": {"type": "array", "minItems": 2,
                                                "maxItems": MAX_STAGES, "uniqueItems": True,
                                                "items": _INDEX},
                                    "aggregation": {"const": "mean_softmax"},
                                    # final (QUTE, the default): the last member decides;
                                    # running_mean: every member decides on the mean so far
                                    "mode": {"enum": ["final", "running_mean"]},
                                    "created_for": {"enum": ["running_mean"]},
                                    "monitor": {"anyOf": [{"type": "null"}, {
                                        "type": "object", "required": ["window", "rho"],
                                        "properties": {
                                            "window": {"type": "integer", "minimum": 1,
                                                       "maximum": 1 << 20},
                                            "rho": _FRACTION,
                                            "false_alarm_target": _FRACTION}}]}}},
        # a cascade of independent models (eedge.cascade): stage k is member k
        "cascade": {"type": "object", "required": ["members", "input"],
                    "properties": {
                        "members": {"type": "array", "minItems": 2, "maxItems": MAX_STAGES,
                                    "items": {"type": "object",
                                              "required": ["name", "file", "format", "sha256",
                                                           "macs", "exit"],
                                              "properties": {
                                                  "name": _NAME, "file": _NAME,
                                                  "format": {"enum": ["onnx", "torch",
                                                                      "tflite"]},
                                                  "sha256": _SHA256, "macs": _COUNT,
                                                  "exit": _INDEX}}},
                        "input": _NAME, "merge_check": _FLOAT_CHECK}},
        "tvm": {"type": "object", "maxProperties": 64, "additionalProperties": {
            "type": "object", "required": ["version", "target"],
            "properties": {"version": _TEXT, "target": _TEXT}}},
        "memory": {"type": "object", "required": ["arena_bytes"],
                   "properties": {"arena_bytes": _COUNT}},
        "files": {
            "type": "object", "minProperties": 1, "maxProperties": 4096,
            "propertyNames": _FILE_NAME,
            "additionalProperties": {
                "type": "object", "required": ["sha256", "bytes"],
                "properties": {"sha256": _SHA256, "bytes": _COUNT},
            },
        },
    },
}
