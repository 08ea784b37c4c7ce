"""The early-exit cascade on ONNX Runtime.

Stages run in order, one ONNX Runtime session each (created once). After a
stage with an exit, samples whose confidence reaches the exit's threshold
leave the batch; only the remaining rows of the hand-off tensors go on to
the next stage, so a batch costs what its hardest samples need. Hand-offs
are dropped as soon as no later stage reads them.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError, InputDataError
from eedge.io.arrays import check_finite as check_finite_array
from eedge.ir.bundle import Bundle, load_bundle
from eedge.ir.graph import QuantParams
from eedge.ir.layout import to_channels_last
from eedge.policies.criteria import (CRITERIA, gate_score, score_from_probabilities, softmax,
                                     split_gate)
from eedge.policies.fixed_point import (ENTROPY_LUT, int8_probabilities, int8_score,
                                        threshold_q)
from eedge.policies.int8_softmax import MAX_COLS, exp_table
from eedge.policies import running_mean
from eedge.reference.int8_kernels import dequantize_output, quantize_input
from eedge.runtime.stage_runners import RUNTIMES, make_runner


@dataclass
class CascadeResult:
    """What a cascade run decided, per sample, and what each stage cost."""

    predictions: np.ndarray       # (N,) predicted class
    probabilities: np.ndarray     # (N, C) softmax of the deciding exit
    exit_index: np.ndarray        # (N,) exit that decided
    confidence: np.ndarray        # (N,) criterion value at the deciding exit
    stage_seconds: list[float] = field(default_factory=list)   # wall time per stage
    stage_samples: list[int] = field(default_factory=list)     # rows that ran each stage
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # window policy
    confidence_q: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int8
    # ensemble: summed int8 probabilities of the winning class (-1 where no ensemble decided)
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # head bundles:
    handoff: dict[str, np.ndarray] = field(default_factory=dict)  # rows for the server

    def to_json(self) -> dict[str, Any]:
        return {"predictions": self.predictions.tolist(),
                "exit_index": self.exit_index.tolist(),
                "rejected": self.rejected.tolist(),
                "confidence": [round(float(c), 6) for c in self.confidence],
                "stage_seconds": self.stage_seconds, "stage_samples": self.stage_samples}


def make_session(path: Path, threads: int) -> Any:
    """One CPU ONNX Runtime session with a pinned thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # failures raise; ORT printing them too makes two lines
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"ONNX Runtime cannot load {path.name}: "
                          f"{str(exc).splitlines()[0]}; re-export the bundle") from exc


def prepare_inputs(inputs_spec: Sequence[Mapping[str, Any]],
                   x: np.ndarray | Mapping[str, np.ndarray],
                   check_finite: bool = False) -> dict[str, np.ndarray]:
    """Check user arrays against the model's inputs; add a batch axis if missing.

    With ``check_finite``, NaN or infinite values are refused, checked after the
    conversion to the model's dtype (float64 1e39 becomes float32 inf).
    """
    if not isinstance(x, Mapping):
        if len(inputs_spec) != 1:
            names = ", ".join(s["name"] for s in inputs_spec)
            raise InputDataError(f"the model has {len(inputs_spec)} inputs ({names}); pass a "
                                 "dict of arrays by name")
        x = {inputs_spec[0]["name"]: x}
    feeds: dict[str, np.ndarray] = {}
    batch_sizes = set()
    for spec in inputs_spec:
        name = spec["name"]
        if name not in x:
            raise InputDataError(f"missing input {name!r}")
        array = np.asarray(x[name])
        if not np.issubdtype(array.dtype, np.number):
            raise InputDataError(f"input {name!r} has dtype {array.dtype}; pass numbers")
        expected = list(spec["shape"])
        if array.ndim == len(expected) - 1:
            array = array[None]
        fixed = expected[1:]
        if array.ndim != len(expected) or list(array.shape[1:]) != fixed:
            shown = ", ".join(str(d) for d in expected)
            raise InputDataError(f"input {name!r} has shape {list(array.shape)}; the model "
                                 f"expects ({shown}) (or one sample without the batch axis)")
        if isinstance(expected[0], int) and expected[0] != 1 and array.shape[0] != expected[0]:
            raise InputDataError(f"input {name!r} has batch {array.shape[0]}; the model is "
                                 f"fixed to batch {expected[0]}")
        if check_finite:
            check_finite_array(array, f"input {name!r}")
        with np.errstate(over="ignore", invalid="ignore"):
            feeds[name] = np.ascontiguousarray(array, dtype=np.dtype(spec["dtype"]))
        if check_finite and feeds[name].dtype != array.dtype:  # same dtype: checked above
            check_finite_array(feeds[name], f"input {name!r}", source=array)
        batch_sizes.add(array.shape[0])
    if len(batch_sizes) != 1:
        raise InputDataError(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
    return feeds


def available_runtimes(manifest: Mapping[str, Any]) -> list[str]:
    formats = set.intersection(*(set(s["files"]) for s in manifest["stages"]))
    return [name for name, (fmt, _) in RUNTIMES.items() if fmt in formats]


def default_runtime(manifest: Mapping[str, Any]) -> str:
    """ONNX Runtime when there are ONNX stages, else int8, else float TFLite."""
    available = available_runtimes(manifest)
    for name in ("onnx", "int8", "tflite"):
        if name in available:
            return name
    raise BundleError("the bundle has no stage files any runtime can execute")


class Cascade:
    """Run a bundle's stages with early exits.

    ``runtime`` picks the stage files and engine (see ``RUNTIMES``):
    ``onnx`` (ONNX Runtime), ``tflite`` (LiteRT, float32), ``int8`` (LiteRT,
    int8), ``int8-reference`` (eedge's bit-exact numpy executor) or
    ``int8-tflm`` (TFLite Micro's interpreter). Inputs are always given as
    the model's user-facing float inputs; layout changes and quantization
    happen here. ``thresholds`` overrides the manifest's per-exit
    thresholds (``None`` for an exit means it never stops the cascade; the
    final exit always decides).

    ``check_finite`` (default True) refuses inputs holding NaN or infinity
    (after conversion to the model's dtype, so float64 1e39 is refused as the
    float32 inf it would become) and exits whose float logits overflow to a
    non-finite value, with an InputDataError naming the sample. The default is
    on because an answer to a NaN input is a confident-looking wrong answer
    (the int8 path quantizes NaN to a plausible class); the check costs one
    pass over the input. Pass False only for data already checked.
    """

    def __init__(self, bundle: Bundle | str | Path,
                 thresholds: Sequence[float | None] | None = None, threads: int = 1,
                 runtime: str | None = None, check_finite: bool = True) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputDataError(f"threads must be a positive integer, got {threads!r}")
        self.check_finite = check_finite
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        manifest = self.bundle.manifest
        self.stages = manifest["stages"]
        self.exits = manifest["exits"]
        self.inputs = manifest["inputs"]
        self.runtime = runtime or default_runtime(manifest)
        if self.runtime not in RUNTIMES:
            raise InputDataError(f"unknown runtime {self.runtime!r}; choose one of "
                                 f"{', '.join(RUNTIMES)}")
        self.format, engine = RUNTIMES[self.runtime]
        missing = [s["name"] for s in self.stages if self.format not in s["files"]]
        if missing:
            hint = {"tflite_int8": "export with --int8 --calib DATA",
                    "tflite": "export with --format tflite",
                    "onnx": "export from an ONNX or torch source",
                    "tvm_host": "run `eedge compile BUNDLE --backend tvm --target host`",
                    }[self.format]
            raise BundleError(f"{self.bundle.path} has no {self.format} stage files; {hint} "
                              f"(available: {', '.join(available_runtimes(manifest))})")
        self.io = [s["io"][self.format] for s in self.stages]
        self.dynamic_batch = all(isinstance(i["shape"][0], str) for i in self.inputs)
        # TVM libraries built from a tuning database are compiled at that batch (1): a
        # larger batch then runs row by row, as a batch-1 export's stages do
        tuned_batch = (((manifest.get("tvm") or {}).get("host") or {}).get("tuning")
                       or {}).get("batch") if self.format == "tvm_host" else None
        runner_batch_dynamic = self.dynamic_batch and tuned_batch is None
        self.runners = [make_runner(engine, self.bundle.file(s["files"][self.format]),
                                    [t["name"] for t in io["inputs"]], len(io["outputs"]),
                                    runner_batch_dynamic, threads)
                        for s, io in zip(self.stages, self.io)]
        self.thresholds: list[float | None] = [e["policy"]["threshold"] for e in self.exits]
        self.criteria: list[str] = [e["policy"]["criterion"] for e in self.exits]
        self.window_low: list[float | None] = [e["policy"].get("window_low") for e in self.exits]
        # learned gates: the exit tensor's gate column (its last), None for an exit without one
        self.gates: list[int | None] = [(e.get("gate") or {}).get("column") for e in self.exits]
        self._check_gates(self.criteria)
        if thresholds is not None:
            self.set_thresholds(thresholds)
        self.threshold_offset_q = 0  # moved by the integer budget policy (int8 runtimes)
        self.ensemble_members: list[int] = list((manifest.get("ensemble") or {})
                                                .get("members", []))
        # running-mean ensemble: each member decides on the mean of the members so far
        self.running_members: list[int] = running_mean.running_members(manifest)
        self.role = (manifest.get("split") or {}).get("role")
        if self.running_members and self.role is not None:
            raise BundleError("a split bundle cannot decide on a running-mean ensemble (the "
                              "tail would need the head's sums); run the whole bundle, or turn "
                              "the mode off with `eedge calibrate ... --ensemble none`")
        # a head bundle has no final exit: what its exits do not take goes to the server
        self.final_exit = len(self.exits) - 1 if self.role != "head" else -1
        self.cut_tensors = [t["name"] for t in manifest["split"]["cut_tensors"]] \
            if self.role == "head" else []
        self._last_reader = self._last_readers()
        for name in self.cut_tensors:
            self._last_reader[name] = len(self.stages)
        self._input_quant = {t["name"]: QuantParams.from_json(t["quant"])
                             for io in self.io for t in io["inputs"] if t.get("quant")}

    def set_policy(self, criterion: str | None = None,
                   window_low: Sequence[float | None] | None = None) -> None:
        """Override the criterion (all exits) and/or the window's lower edge per exit."""
        if criterion is not None:
            if criterion not in CRITERIA:
                raise InputDataError(f"unknown criterion {criterion!r}; use one of "
                                     f"{', '.join(CRITERIA)}")
            self._check_gates([criterion] * len(self.exits))
            self.criteria = [criterion] * len(self.exits)
        if window_low is not None:
            if len(window_low) != len(self.exits):
                raise InputDataError("give one window edge per exit")
            for k, low in enumerate(window_low):  # NaN fails the comparison too
                if low is not None and not (isinstance(low, (int, float)) and 0.0 <= low <= 1.0):
                    raise InputDataError(f"window edge {low} for exit{k} is not a number in "
                                         "[0, 1]; give one, or None for no window")
            self.window_low = list(window_low)

    def _check_gates(self, criteria: Sequence[str]) -> None:
        """The gate criterion needs a gate on every exit that decides with it."""
        for k, criterion in enumerate(criteria):
            if criterion == "gate" and self.gates[k] is None and k != self.final_exit_index():
                raise InputDataError(f"exit{k} has no gate, so it cannot use the gate "
                                     "criterion; export the model with --gates (see "
                                     "eedge.train.gates)")

    def final_exit_index(self) -> int:
        """The exit that always decides (-1 on a head bundle, whose exits may all pass)."""
        role = (self.bundle.manifest.get("split") or {}).get("role")
        return len(self.exits) - 1 if role != "head" else -1

    def class_logits(self, k: int, values: np.ndarray) -> np.ndarray:
        """Exit ``k``'s class columns (a gated exit's tensor also holds the gate logit)."""
        return values if self.gates[k] is None else values[..., : self.gates[k]]

    def set_thresholds(self, thresholds: Sequence[float | None]) -> None:
        if len(thresholds) != len(self.exits):
            raise InputDataError(f"got {len(thresholds)} thresholds for {len(self.exits)} "
                                 "exits; give one per exit (the final one is ignored)")
        for t in thresholds:
            if t is not None and not 0.0 <= t <= 1.0:
                raise InputDataError(f"threshold {t} is outside [0, 1]")
        self.thresholds = list(thresholds)

    def _last_readers(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for stage, io in zip(self.stages, self.io):
            for t in io["inputs"]:
                last[t["name"]] = stage["index"]
        return last

    def raw_input_specs(self) -> list[dict[str, Any]]:
        """The model inputs as the stages see them (layout, dtype, quantization)."""
        names = {i["name"] for i in self.inputs}
        specs = {t["name"]: t for io in self.io for t in io["inputs"] if t["name"] in names}
        return list(specs.values())

    def check_inputs(self, x: np.ndarray | Mapping[str, np.ndarray]) -> None:
        """Raise InputDataError if ``x`` does not fit the model's inputs (shape, dtype,
        and with ``check_finite`` NaN/inf after conversion to the model's dtype)."""
        prepare_inputs(self.inputs, x, self.check_finite)

    def stage_inputs(self, x: np.ndarray | Mapping[str, np.ndarray],
                     raw: bool = False) -> dict[str, np.ndarray]:
        """User inputs -> the first stage's representation (layout, int8).

        ``raw`` inputs are already in that representation (hand-offs produced by
        a head bundle with the same runtime) and are only shape-checked.
        """
        if raw:
            return prepare_inputs(self.raw_input_specs(), x, self.check_finite)
        feeds = prepare_inputs(self.inputs, x, self.check_finite)
        converted = {}
        for spec in self.inputs:
            array = feeds[spec["name"]]
            if self.format.startswith("tflite"):
                array = to_channels_last(array, spec.get("layout"))
            quant = self._input_quant.get(spec["name"])
            if quant is not None and spec["dtype"] != "int8":
                array = quantize_input(array, quant)
            converted[spec["name"]] = array
        return converted

    def _exit_logits(self, stage_index: int, store: dict[str, np.ndarray]) -> np.ndarray:
        """Float logits of the exit of a stage (dequantized for int8 stages)."""
        spec = self.io[stage_index]["outputs"][0]
        values = store[spec["name"]]
        if spec.get("quant"):
            return dequantize_output(values, QuantParams.from_json(spec["quant"]))
        self._check_logits(values, stage_index, np.arange(len(values)))
        return values

    def _check_logits(self, values: np.ndarray, stage_index: int, rows: np.ndarray) -> None:
        """With ``check_finite``: float exit logits must be finite (overflow is refused)."""
        if not self.check_finite or values.dtype.kind != "f" or np.isfinite(values).all():
            return
        row = int(np.argmax(~np.isfinite(values).reshape(len(values), -1).all(axis=1)))
        exit_index = self.stages[stage_index]["exit"]
        raise InputDataError(f"exit {exit_index} computes non-finite logits for sample "
                             f"{int(rows[row])}: its input overflows the model's float "
                             "range; scale the inputs as in training")

    def _run_stage(self, index: int, store: dict[str, np.ndarray], borrow: bool = False
                   ) -> None:
        """Run stage ``index`` on the store's tensors and add its outputs to the store.

        ``borrow`` (``infer``'s hot loop) takes the outputs in the runner's own buffers
        when it keeps some (ONNX Runtime's bound outputs): they stay valid until the
        stage runs again, so what outlives the call must be copied (row selection in
        ``_decide`` copies; the head's hand-off is copied at the end of ``infer``).
        """
        inputs, outputs = self._stage_names[index]
        runner = self.runners[index]
        run = getattr(runner, "run_borrowed", runner.run) if borrow else runner.run
        for name, value in zip(outputs, run([store[name] for name in inputs])):
            store[name] = value

    @functools.cached_property
    def _stage_names(self) -> list[tuple[list[str], list[str]]]:
        """Input and output tensor names per stage (looked up once, not per call)."""
        return [([t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]])
                for io in self.io]

    @functools.cached_property
    def _dropped_after(self) -> list[list[str]]:
        """Per stage: the tensors no later stage reads, dropped from the store after it."""
        live = [spec["name"] for spec in self.inputs]
        dropped: list[list[str]] = []
        for stage, (_, outputs) in zip(self.stages, self._stage_names):
            live += outputs
            done = [n for n in live if self._last_reader.get(n, -1) <= stage["index"]]
            live = [n for n in live if n not in done]
            dropped.append(done)
        return dropped

    def run_all_exits(self, x: np.ndarray | Mapping[str, np.ndarray],
                      raw: bool = False) -> list[np.ndarray]:
        """Logits of every exit for every sample (no early exit): for evaluation.

        ``raw`` returns the exit tensors as the stages produce them (int8
        for int8 runtimes) instead of float logits.
        """
        store = self.stage_inputs(x)
        logits: dict[int, np.ndarray] = {}
        for stage in self.stages:
            self._run_stage(stage["index"], store)
            if stage["exit"] is not None and raw:
                values = store[self.io[stage["index"]]["outputs"][0]["name"]]
                self._check_logits(values, stage["index"], np.arange(len(values)))
                logits[stage["exit"]] = values
            elif stage["exit"] is not None:
                logits[stage["exit"]] = self._exit_logits(stage["index"], store)
        return [logits[k] for k in range(len(self.exits))]

    def infer(self, x: np.ndarray | Mapping[str, np.ndarray],
              early_exit: bool = True, raw: bool = False) -> CascadeResult:
        """Run the cascade; each sample stops at its first confident exit.

        On a head bundle, samples no exit takes are listed in ``pending`` with
        their cut tensors in ``handoff`` (the rows to send to the tail).
        """
        store = None if raw else self._one_input(x)
        if store is not None:
            return self._infer_one(store, early_exit)
        store = self.stage_inputs(x, raw)
        n = next(iter(store.values())).shape[0]
        if n == 1:
            return self._infer_one(store, early_exit)
        classes = self.exits[-1]["num_classes"]
        result = CascadeResult(predictions=np.full(n, -1, dtype=np.int64),
                               probabilities=np.zeros((n, classes), dtype=np.float32),
                               exit_index=np.full(n, -1, dtype=np.int64),
                               confidence=np.zeros(n, dtype=np.float32),
                               rejected=np.zeros(n, dtype=bool),
                               confidence_q=np.full(n, -1, dtype=np.int64))
        ensemble_sum: np.ndarray | None = None
        active = np.arange(n)
        for stage in self.stages:
            if active.size == 0:
                result.stage_seconds.append(0.0)
                result.stage_samples.append(0)
                continue
            start = time.perf_counter()
            self._run_stage(stage["index"], store, borrow=True)
            result.stage_seconds.append(time.perf_counter() - start)
            result.stage_samples.append(int(active.size))
            if stage["exit"] in self.running_members:
                ensemble_sum, active, store = self._running_mean(
                    stage["exit"], stage["index"], ensemble_sum, active, store, result,
                    early_exit)
            elif stage["exit"] in self.ensemble_members:
                ensemble_sum, active, store = self._ensemble(stage["exit"], stage["index"],
                                                             ensemble_sum, active, store, result)
            elif stage["exit"] is not None:
                active, store = self._decide(stage["exit"], stage["index"], active, store,
                                             result, early_exit)
            for name in self._dropped_after[stage["index"]]:
                store.pop(name, None)
        if active.size:
            result.pending = active
            result.handoff = {name: np.array(store[name]) for name in self.cut_tensors}
        return result

    def _ensemble(self, k: int, stage_index: int, total: np.ndarray | None, active: np.ndarray,
                  store: dict[str, np.ndarray], result: CascadeResult
                  ) -> tuple[np.ndarray | None, np.ndarray, dict[str, np.ndarray]]:
        """Add exit k's probabilities to the ensemble; the last member decides for all.

        int8 stages add TFLite int8 softmax values as integers (q + 128, so a member
        contributes 0..255 per class); the C runtime sums the same integers.
        """
        spec = self.io[stage_index]["outputs"][0]
        values = store[spec["name"]]
        if spec.get("quant"):
            q = int8_probabilities(values, QuantParams.from_json(spec["quant"]).scale[0])
            part = q.astype(np.int64) + 128
        else:
            self._check_logits(values, stage_index, active)
            part = softmax(values)
        total = part if total is None else total + part
        if k != self.ensemble_members[-1]:
            return total, active, store
        members = len(self.ensemble_members)
        integer = np.issubdtype(total.dtype, np.integer)
        probs = (total / (256.0 * members) if integer else total / members).astype(np.float32)
        result.predictions[active] = np.argmax(total, axis=-1)
        result.probabilities[active, : probs.shape[-1]] = probs
        result.exit_index[active] = k
        result.confidence[active] = probs.max(axis=-1)
        if integer:
            result.confidence_q[active] = total.max(axis=-1)
        empty = active[:0]
        return None, empty, {name: v[:0] for name, v in store.items()}

    def _running_mean(self, k: int, stage_index: int, total: np.ndarray | None,
                      active: np.ndarray, store: dict[str, np.ndarray], result: CascadeResult,
                      early_exit: bool
                      ) -> tuple[np.ndarray | None, np.ndarray, dict[str, np.ndarray]]:
        """Exit k decides on the running mean of the ensemble members up to it.

        The rules (float mean of softmaxes; int8 sums of q + 128 scored in
        integers, as the C runtime does) are eedge.policies.running_mean's.
        Thresholds and windows work as for a single exit (see ``_decide``).
        """
        spec = self.io[stage_index]["outputs"][0]
        values = self.class_logits(k, store[spec["name"]])  # a learned gate's column is no class
        members = self.running_members.index(k) + 1
        final = k == self.final_exit
        criterion = self.criteria[k]
        running_mean.check_criterion(criterion)
        threshold = self.thresholds[k] if early_exit else None
        low = self.window_low[k] if early_exit or final else None
        none = np.zeros(active.size, bool)
        if spec.get("quant"):
            total = running_mean.add_member(total, values,
                                            QuantParams.from_json(spec["quant"]).scale[0])
            classes = total.shape[-1]
            score_q = running_mean.sum_score(total, members, criterion)
            limit = running_mean.sum_threshold_q(threshold, final, criterion, classes, members)
            if not final and threshold is not None:
                limit += self.threshold_offset_q  # the integer budget policy's offset
            leaving = score_q >= limit
            rejected = none if low is None else score_q < running_mean.sum_threshold_q(
                low, False, criterion, classes, members)
            result.confidence_q[active[leaving | rejected]] = score_q[leaving | rejected]
        else:
            self._check_logits(values, stage_index, active)
            total = running_mean.add_member(total, values, None)
            score = running_mean.score(total, members, criterion)
            leaving = np.ones(active.size, bool) if final else (
                none if threshold is None else score >= threshold)
            rejected = none if low is None else score < low
        probs = running_mean.mean_probabilities(total, members)
        leaving = leaving | rejected
        rows = active[leaving]
        result.predictions[rows] = np.argmax(total[leaving], axis=-1)
        result.probabilities[rows, : probs.shape[-1]] = probs[leaving]
        result.exit_index[rows] = k
        result.confidence[rows] = score_from_probabilities(probs[leaving].astype(np.float64),
                                                           criterion)
        result.rejected[rows] = rejected[leaving]
        staying = ~leaving
        return total[staying], active[staying], {name: v[staying] for name, v in store.items()}

    def _decide(self, k: int, stage_index: int, active: np.ndarray,
                store: dict[str, np.ndarray], result: CascadeResult, early_exit: bool
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Record samples that exit at exit ``k``; keep the rest.

        int8 stages decide in fixed point exactly as the generated C does (an
        integer score of the int8 softmax against an integer threshold); float
        stages on float scores. With a window (``window_low``), samples scoring
        below it leave too, flagged as rejected (too uncertain to be worth
        more computation).
        """
        spec = self.io[stage_index]["outputs"][0]
        final = k == self.final_exit
        criterion = self.criteria[k]
        threshold = self.thresholds[k] if early_exit else None
        # the final exit's window_low is the selective threshold: below it, rejected
        low = self.window_low[k] if early_exit or final else None
        values, gate = split_gate(store[spec["name"]], self.gates[k])  # gate: learned gates
        if gate is None and criterion == "gate":  # only the final exit, which always decides
            criterion = "max_softmax"
        classes = values.shape[-1]
        if spec.get("quant"):
            quant = QuantParams.from_json(spec["quant"])
            scale, gate_q = quant.scale[0], (quant.scale[0], quant.zero_point[0])
            q = int8_probabilities(values, scale).astype(np.int32)
            probs = ((q + 128) / 256).astype(np.float32)
            score_q = gate.astype(np.int32) if criterion == "gate" else int8_score(q, criterion)
            limit = threshold_q(threshold, final, criterion, classes, gate_q)
            if not final and threshold is not None:
                limit += self.threshold_offset_q  # the integer budget policy's offset
            leaving = score_q >= limit
            rejected = (score_q < threshold_q(low, False, criterion, classes, gate_q)
                        if low is not None else np.zeros(active.size, bool))
            if gate is not None:
                gate = (gate.astype(np.float64) - gate_q[1]) * scale  # for the confidence
        else:
            self._check_logits(store[spec["name"]], stage_index, active)
            probs = softmax(values)
            score = gate_score(gate) if criterion == "gate" else \
                score_from_probabilities(probs, criterion)
            leaving = np.ones(active.size, bool) if final else (
                np.zeros(active.size, bool) if threshold is None else score >= threshold)
            rejected = score < low if low is not None else np.zeros(active.size, bool)
        leaving = leaving | rejected
        rows = active[leaving]
        result.predictions[rows] = np.argmax(values[leaving], axis=-1)
        result.probabilities[rows, : probs.shape[-1]] = probs[leaving]
        result.exit_index[rows] = k
        result.confidence[rows] = gate_score(gate[leaving]) if criterion == "gate" else \
            score_from_probabilities(probs[leaving].astype(np.float64), criterion)
        result.rejected[rows] = rejected[leaving]
        staying = ~leaving
        return active[staying], {name: v[staying] for name, v in store.items()}

    # ------------------------------------------------------------------ batch 1
    # One sample at a time (a stream, a server's request) is where the cascade's own
    # Python shows: the batch code above spends ~40 us per stage on array bookkeeping
    # around stages that take a few us. The methods below decide exactly as the batch
    # code (tests/runtime/test_fast_path.py compares every field on random inputs for
    # every criterion, window, gate and runtime) with scalar Python on the exit's row;
    # what they do not cover (ensembles, non-finite logits) goes to the batch methods.

    @functools.cached_property
    def _one_input_plan(self) -> tuple[str, np.dtype, tuple[int, ...], tuple[int, ...],
                                       dict[str, Any]] | None:
        """(name, dtype, shape with and without the batch axis, the input spec) when a
        plain array can skip prepare_inputs' general checks; None for several inputs or a
        model fixed to a batch other than 1."""
        if len(self.inputs) != 1:
            return None
        spec = self.inputs[0]
        shape = list(spec["shape"])
        if not isinstance(shape[0], str) and shape[0] != 1:
            return None
        if not all(isinstance(d, int) for d in shape[1:]):
            return None
        return (spec["name"], np.dtype(spec["dtype"]), (1, *shape[1:]), tuple(shape[1:]),
                spec)

    def _one_input(self, x: Any) -> dict[str, np.ndarray] | None:
        """The store for one C-contiguous sample of the model's dtype, or None to let
        ``stage_inputs`` check and convert (also whenever the finiteness check fails, so
        the error is its error)."""
        plan = self._one_input_plan
        if plan is None or type(x) is not np.ndarray:
            return None
        name, dtype, batched, single, spec = plan
        if x.dtype != dtype or not x.flags.c_contiguous:
            return None
        if x.shape == single:
            x = x[None]
        elif x.shape != batched:
            return None
        if self.check_finite and dtype.kind == "f":
            # a float64 sum is NaN or infinite iff a value is (float32 values cannot overflow
            # it), and warns about nothing; for large inputs numpy's own check is cheaper
            if x.size <= 1024:
                if not math.isfinite(sum(x.ravel().tolist())):
                    return None
            elif not np.isfinite(x).all():
                return None
        if self.format.startswith("tflite"):
            x = to_channels_last(x, spec.get("layout"))
        quant = self._input_quant.get(name)
        if quant is not None and spec["dtype"] != "int8":
            x = _quantize_one(x, self._one_quant) if self.check_finite and \
                dtype == np.float32 else quantize_input(x, quant)
        return {name: x}

    @functools.cached_property
    def _one_quant(self) -> tuple[np.float32, np.float32, int]:
        """The single input's (float32 scale, clamp limit, zero point) for _quantize_one."""
        quant = self._input_quant[self.inputs[0]["name"]]
        scale = np.float32(quant.scale[0])
        return scale, np.float32(min(1e37 * float(scale), 3e38)), int(quant.zero_point[0])

    @functools.cached_property
    def _one_plan(self) -> list[tuple[int, int | None, Any, list[str], list[str]]]:
        """Per stage: index, exit, the runner's borrowing call, input and output names.

        Nothing is dropped from a one-sample store: the stages' outputs are the runners'
        own buffers (borrowed) and the input is the caller's, so dropping frees nothing."""
        return [(stage["index"], stage["exit"], getattr(runner, "run_borrowed", runner.run),
                 inputs, outputs)
                for stage, runner, (inputs, outputs)
                in zip(self.stages, self.runners, self._stage_names)]

    @functools.cached_property
    def _one_exit(self) -> dict[int, tuple[Any, ...]]:
        """Per exit stage: (exit, exit tensor name, the int8 softmax table (None for float
        exits or rows too wide for it), (scale, zero point) of an int8 exit tensor, class
        columns, gate column or None, final exit?, class columns == result columns?)."""
        out = {}
        width = self.exits[-1]["num_classes"]
        for stage, io in zip(self.stages, self.io):
            k = stage["exit"]
            if k is None:
                continue
            spec = io["outputs"][0]
            column = self.gates[k]
            classes = column if column is not None else int(self.exits[k]["num_classes"])
            table = quant = None
            if spec.get("quant"):
                params = QuantParams.from_json(spec["quant"])
                quant = (params.scale[0], params.zero_point[0])
                table = exp_table(params.scale[0]) if classes <= MAX_COLS else None
            out[stage["index"]] = (k, spec["name"], table, quant, classes, column,
                                   k == self.final_exit, classes == width)
        return out

    @functools.cached_property
    def _one_blank(self) -> tuple[np.ndarray, ...]:
        classes = self.exits[-1]["num_classes"]
        return (np.full(1, -1, dtype=np.int64), np.zeros((1, classes), dtype=np.float32),
                np.full(1, -1, dtype=np.int64), np.zeros(1, dtype=np.float32),
                np.zeros(1, dtype=bool), np.full(1, -1, dtype=np.int64))

    def _infer_one(self, store: dict[str, np.ndarray], early_exit: bool) -> CascadeResult:
        """``infer`` for one sample: the same stages, decisions and result."""
        blank = self._one_blank
        seconds: list[float] = []
        # every field given: the dataclass's default factories cost ~2 us per call
        result = CascadeResult(blank[0].copy(), blank[1].copy(), blank[2].copy(),
                               blank[3].copy(), seconds, [], blank[4].copy(),
                               blank[5].copy(), _NO_ROWS, {})
        clock = time.perf_counter
        running, ensemble = self.running_members, self.ensemble_members
        total: np.ndarray | None = None
        plan = self._one_plan
        left = False
        for index, k, run, inputs, outputs in plan:
            start = clock()
            values = run([store[inputs[0]]] if len(inputs) == 1 else
                         [store[name] for name in inputs])
            seconds.append(clock() - start)
            if len(outputs) == 1:
                store[outputs[0]] = values[0]
            else:
                for name, value in zip(outputs, values):
                    store[name] = value
            if k is None:
                continue
            if k in running:
                total, rows, store = self._running_mean(k, index, total, np.zeros(1, int),
                                                        store, result, early_exit)
                left = rows.size == 0
            elif k in ensemble:
                total, rows, store = self._ensemble(k, index, total, np.zeros(1, int), store,
                                                    result)
                left = rows.size == 0
            else:
                decided = self._decide_one(k, index, store, result, early_exit)
                if decided is None:
                    rows, store = self._decide(k, index, np.zeros(1, int), store, result,
                                               early_exit)
                    decided = rows.size == 0
                left = decided
            if left:
                break
        ran = len(seconds)
        result.stage_samples = [1] * ran + [0] * (len(plan) - ran)
        seconds += [0.0] * (len(plan) - ran)
        if not left:
            result.pending = np.zeros(1, dtype=np.int64)
            result.handoff = {name: np.array(store[name]) for name in self.cut_tensors}
        return result

    @functools.cached_property
    def _one_limit_cache(self) -> dict[tuple[Any, ...], tuple[int, int | None]]:
        return {}

    def _one_limits(self, stage_index: int, criterion: str, threshold: float | None,
                    low: float | None, offset: int) -> tuple[int, int | None]:
        """``_decide``'s integer threshold (with the budget offset) and window edge, computed
        once per setting (thresholds change between calls in calibration and profiling)."""
        key = (stage_index, criterion, threshold, low, offset)
        cached = self._one_limit_cache.get(key)
        if cached is not None:
            return cached
        _, _, _, quant, classes, _, final, _ = self._one_exit[stage_index]
        limit = threshold_q(threshold, final, criterion, classes, quant)
        if not final and threshold is not None:
            limit += offset
        cached = (limit, None if low is None else
                  threshold_q(low, False, criterion, classes, quant))
        if len(self._one_limit_cache) > 4096:
            self._one_limit_cache.clear()
        self._one_limit_cache[key] = cached
        return cached

    def _decide_one(self, k: int, stage_index: int, store: dict[str, np.ndarray],
                    result: CascadeResult, early_exit: bool) -> bool | None:
        """``_decide`` for one sample: True if it leaves at exit ``k``, False if it goes on,
        None (nothing recorded) for what only ``_decide`` handles: non-finite float logits
        (refused or, without check_finite, scored as numpy does), unknown criteria, int8
        rows too wide for the exp table.

        Scalar Python on the exit's row where that is exact (max, sorting, differences,
        integer scores, the int8 softmax table) and numpy's own calls where the float
        value depends on its kernels (exp, the sum's order, log), so every value equals
        the batch code's bit for bit."""
        _, name, table, quant, classes, column, final, full = self._one_exit[stage_index]
        criterion = self.criteria[k]
        if column is None and criterion == "gate":  # only the final exit, which always decides
            criterion = "max_softmax"
        elif criterion not in _ONE_CRITERIA:
            return None
        threshold = self.thresholds[k] if early_exit else None
        low = self.window_low[k] if early_exit or final else None
        tensor = store[name]
        row = tensor[0]
        logits = row.tolist()
        gate = None
        if column is not None:
            gate = logits[column]
            logits = logits[:column]
        probabilities = result.probabilities
        if quant is not None:
            if table is None:
                return None
            q = table.row(logits)
            if criterion == "max_softmax":
                score: float = max(q)
            elif criterion == "gate":
                score = gate
            elif criterion == "margin":
                top = sorted(q)
                score = top[-1] - (top[-2] if classes > 1 else -128)
            else:
                lut = _ENTROPY_LUT
                score = -sum([lut[v + 128] for v in q])
            limit, low_limit = self._one_limits(stage_index, criterion, threshold, low,
                                                self.threshold_offset_q)
            rejected = low_limit is not None and score < low_limit
            if not (score >= limit or rejected):
                return False
            probs = [(v + 128) / 256 for v in q]
            if criterion == "gate":
                confidence = float(gate_score(np.array([(gate - quant[1]) * quant[0]]))[0])
            else:
                confidence = _one_confidence(probs, criterion)
            if full:
                probabilities[0] = probs
            else:
                probabilities[0, :classes] = probs
        else:
            if not math.isfinite(sum(logits) if gate is None else sum(logits) + gate):
                return None
            top = max(logits)
            if not final and criterion != "entropy":
                # most samples stay: a float64 estimate of the score (libm's exp, a plain
                # sum) is within 1e-15 (C + 8) of numpy's value (a few ulps per term); when
                # it is clearly below the threshold and clearly above the window, the
                # exact score is too, and nothing needs numpy. (An exit without threshold
                # or window scores too: eedge profile times forced exit paths with the
                # earlier exits off and must see what a stream's samples cost there;
                # skipping it put the int8 demo's predicted p50 7-12% high.)
                estimate = _estimate(logits, top, gate, criterion)
                margin = 1e-12 * (classes + 8)
                if (threshold is None or estimate + margin < threshold) and \
                        (low is None or estimate - margin >= low):
                    return False
            exp = np.exp((row if column is None else row[:column]).astype(np.float64)
                         - top)  # as criteria.softmax
            probs = exp / np.add.reduce(exp)
            if criterion == "max_softmax":
                score = max(probs.tolist())
            elif criterion == "gate":
                score = float(gate_score(row[column:column + 1])[0])
            elif criterion == "margin":
                score = _one_confidence(probs.tolist(), criterion)
            else:
                score = float(score_from_probabilities(probs[None], criterion)[0])
            rejected = low is not None and score < low
            if not (final or (threshold is not None and score >= threshold) or rejected):
                return False
            confidence = score
            if full:
                probabilities[0] = probs
            else:
                probabilities[0, :classes] = probs
            result.predictions[0] = logits.index(top)
            result.exit_index[0] = k
            result.confidence[0] = confidence
            result.rejected[0] = rejected
            return True
        result.predictions[0] = logits.index(max(logits))
        result.exit_index[0] = k
        result.confidence[0] = confidence
        result.rejected[0] = rejected
        return True


def _quantize_one(x: np.ndarray, quant: tuple[np.float32, np.float32, int]) -> np.ndarray:
    """``quantize_input`` in fewer numpy calls, for inputs checked finite.

    Values beyond 1e37 scales saturate either way, so they are clamped first and the
    float32 division (QUANTIZE's) cannot overflow; rounding half away from zero is
    trunc(y + copysign(0.5, y)) in float64, exact for float32 y (y + 0.5 needs at most
    25 significant bits below 2^24, and larger float32 values are even integers)."""
    scale, limit, zero_point = quant
    y = (np.maximum(np.minimum(x, limit), -limit) / scale).astype(np.float64)
    q = np.trunc(y + np.copysign(0.5, y))
    q += zero_point
    np.minimum(q, 127.0, out=q)
    np.maximum(q, -128.0, out=q)  # (np.clip's Python wrapper costs as much as all the rest)
    return q.astype(np.int8)


def _one_confidence(probs: list[float], criterion: str) -> float:
    """score_from_probabilities on one row (float64), as the batch code computes it."""
    if criterion == "max_softmax":
        return max(probs)
    if criterion == "margin":
        if len(probs) < 2:
            return probs[0]
        top = sorted(probs)
        return top[-1] - top[-2]
    return float(score_from_probabilities(np.array([probs]), criterion)[0])


def _estimate(logits: list[float], top: float, gate: float | None, criterion: str) -> float:
    """The float criterion's score in scalar float64 (not bit-exact: see _decide_one);
    ``top`` is the largest logit."""
    if criterion == "gate":
        e = math.exp(-abs(gate))  # type: ignore[arg-type]
        return 1.0 / (1.0 + e) if gate >= 0 else e / (1.0 + e)  # type: ignore[operator]
    exps = [math.exp(v - top) for v in logits]
    if criterion == "max_softmax":
        return 1.0 / sum(exps)  # exp(0) = 1 is the largest term
    if len(exps) < 2:
        return 1.0
    ordered = sorted(exps)
    return (ordered[-1] - ordered[-2]) / sum(exps)


_ONE_CRITERIA = frozenset(("max_softmax", "margin", "entropy", "gate"))
_ENTROPY_LUT: list[int] = ENTROPY_LUT.tolist()
_NO_ROWS = np.zeros(0, dtype=np.int64)  # pending of a decided sample (empty: never written)
_NO_ROWS.flags.writeable = False
