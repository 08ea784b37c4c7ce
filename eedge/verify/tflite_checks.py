"""Independent checks of a bundle's TFLite stages.

* float32 stages (LiteRT) against the whole float model;
* int8 staged cascade against the monolithic int8 model, byte for byte
  (both on LiteRT's reference kernels): cutting after quantization must
  not change a single output byte;
* eedge's int8 reference executor against TFLite Micro on every output of
  every stage, byte for byte (LiteRT's reference kernels where TFLM is known
  wrong: see :mod:`eedge.verify.tflm_exceptions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from eedge.errors import VerificationError
from eedge.ir.bundle import Bundle
from eedge.runtime.cascade import Cascade
from eedge.runtime.interpreters import LiteRTModel, TFLMModel, has_reference_kernels
from eedge.runtime.stage_runners import ReferenceRunner
from eedge.verify.equivalence import TOLERANCE, require_finite, whole_model_exits
from eedge.verify.tflm_exceptions import (LITERT_REF, TFLM, check_stage_in_parts,
                                          exception_reason, tflm_exception_nodes)


def check_float_tflite(bundle: Bundle, feeds: Mapping[str, np.ndarray],
                       tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Staged float TFLite exits vs the whole ONNX model (or whole float TFLite)."""
    staged = Cascade(bundle, runtime="tflite", check_finite=False).run_all_exits(dict(feeds))
    model = bundle.manifest["model"]
    if "onnx" in model["files"]:
        whole = whole_model_exits(bundle.file(model["files"]["onnx"]), dict(feeds),
                                  dynamic_batch=all(isinstance(i["shape"][0], str)
                                                    for i in bundle.manifest["inputs"]))
        reference = "whole ONNX model on onnxruntime"
    else:
        cascade = Cascade(bundle, runtime="tflite")
        whole = LiteRTModel(bundle.file(model["files"]["tflite"]).read_bytes()).run(
            [cascade.stage_inputs(dict(feeds))[i["name"]] for i in bundle.manifest["inputs"]])
        reference = "whole float TFLite model on LiteRT"
    for k, (a, b) in enumerate(zip(staged, whole)):
        require_finite(a, f"float TFLite exit {k}")
        require_finite(b, f"the {reference}'s exit {k}")
    diffs = [float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(staged, whole)]
    worst = max(diffs)
    if not np.isfinite(worst) or worst > tolerance:
        raise VerificationError(f"float TFLite stages differ from the {reference} by {worst:.3g} "
                                f"(> {tolerance:g}); this is an eedge bug: please report it")
    return {"reference": reference, "samples": int(next(iter(feeds.values())).shape[0]),
            "max_abs_diff": worst, "tolerance": tolerance}


def check_int8_staged_vs_monolithic(bundle: Bundle, feeds: Mapping[str, np.ndarray]
                                    ) -> dict[str, Any]:
    """Every exit of the staged int8 cascade equals the monolithic int8 model's bytes.

    Both run on LiteRT's reference kernels, or both on its default kernels when
    the reference resolver lacks an operator of the model (ELU).
    """
    whole_data = bundle.file(bundle.manifest["model"]["files"]["tflite_int8"]).read_bytes()
    reference = has_reference_kernels(whole_data)
    cascade = Cascade(bundle, runtime="int8-litert-ref" if reference else "int8")
    staged = cascade.run_all_exits(dict(feeds), raw=True)
    stage_feeds = cascade.stage_inputs(dict(feeds))
    whole = LiteRTModel(whole_data, reference=reference).run(
        [stage_feeds[i["name"]] for i in bundle.manifest["inputs"]])
    for k, (a, b) in enumerate(zip(staged, whole)):
        if not np.array_equal(a, b):
            rows = int(np.sum(np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)))
            raise VerificationError(f"int8 exit {k}: the staged cascade differs from the "
                                    f"monolithic int8 model on {rows} samples; hand-off "
                                    "quantization is inconsistent (eedge bug)")
    kernels = "reference kernels" if reference else "default kernels (no reference ELU)"
    return {"reference": f"monolithic int8 model, LiteRT {kernels}",
            "samples": int(len(staged[0])), "exits": len(staged), "identical": True}


def check_int8_reference_vs_tflm(bundle: Bundle, feeds: Mapping[str, np.ndarray]
                                 ) -> dict[str, Any]:
    """Each stage: eedge's reference executor and TFLite Micro give the same bytes.

    A stage where TFLM is known to be wrong (a standalone RELU6 that changes
    scale) or has no kernel (RELU_N1_TO_1) is checked in parts instead, those
    nodes against LiteRT's reference kernels; the report names the reference
    each stage followed.
    """
    cascade = Cascade(bundle, runtime="int8-reference")
    store = cascade.stage_inputs(dict(feeds))
    compared = 0
    stages: list[dict[str, Any]] = []
    for stage, io in zip(bundle.stages, cascade.io):
        path = bundle.file(stage["files"]["tflite_int8"])
        inputs = [store[t["name"]] for t in io["inputs"]]
        runner = ReferenceRunner.from_file(path)
        exceptions = tflm_exception_nodes(runner.graph)
        if exceptions:
            env, parts_compared = check_stage_in_parts(
                runner.graph, stage["name"], dict(zip(runner.inputs, inputs)), exceptions)
            ours = [env[name] for name in runner.outputs]
            stages.append({"name": stage["name"], "reference": LITERT_REF,
                           "nodes": [runner.graph.nodes[i].name for i in exceptions],
                           "why": exception_reason(runner.graph, exceptions),
                           "other_nodes_reference": TFLM,
                           "method": "each part fed eedge's own inputs; every tensor compared",
                           "tensors_compared": parts_compared})
        else:
            ours = runner.run(inputs)
            theirs = TFLMModel(path.read_bytes(), len(io["outputs"])).run(inputs)
            for spec, a, b in zip(io["outputs"], ours, theirs):
                if not np.array_equal(a, b.reshape(a.shape)):
                    raise VerificationError(
                        f"{stage['name']}: eedge's int8 reference and TFLite Micro disagree on "
                        f"{spec['name']!r}; this is an eedge bug: please report it")
            stages.append({"name": stage["name"], "reference": TFLM})
        compared += sum(a.shape[0] for a in ours)
        store.update({t["name"]: v for t, v in zip(io["outputs"], ours)})
    reference = "TFLite Micro interpreter, every output of every stage"
    if any(s["reference"] != TFLM for s in stages):
        reference += ("; LiteRT BUILTIN_REF for standalone RELU6 nodes that change scale "
                      "(TFLite Micro is known wrong there) and RELU_N1_TO_1 and GELU nodes "
                      "(TFLite Micro has no such kernels); see stages")
    return {"reference": reference,
            "samples": int(next(iter(store.values())).shape[0]), "tensors_compared": compared,
            "identical": True, "stages": stages}
