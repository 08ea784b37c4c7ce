"""The early-exit cascade on ONNX Runtime.

Stages run in order, one ONNX Runtime session each (created once). After a
stage with an exit, samples whose confidence reaches the exit's threshold
leave the batch; only the remaining rows of the hand-off tensors go on to
the next stage, so a batch costs what its hardest samples need. Hand-offs
are dropped as soon as no later stage reads them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
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
from eedge.policies.fixed_point import int8_probabilities, int8_score, threshold_q
from eedge.policies import running_mean
from eedge.reference.int8_kernels import dequantize_output, quantize_input
from eedge.runtime.cascade_one import OneSample
from eedge.runtime.result import CascadeResult
from eedge.runtime.stage_runners import RUNTIMES, make_runner


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
        if self.format == "tvm_host":
            from eedge.runtime.tvm_runner import check_tuned_cpu

            check_tuned_cpu(manifest, self.bundle.path)
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

    @functools.cached_property
    def _one(self) -> OneSample:
        """The batch-1 path (eedge.runtime.cascade_one): one sample at a time (a stream,
        a server's request) is where the cascade's own Python shows; the batch code below
        spends ~40 us per stage on array bookkeeping around stages that take a few us."""
        return OneSample(self)

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
        if not raw:  # one plain array: the batch-1 path checks and converts it itself
            result = self._one.run(x, early_exit)
            if result is not None:
                return result
        store = self.stage_inputs(x, raw)
        n = next(iter(store.values())).shape[0]
        if n == 1:
            return self._one.infer(store, early_exit)
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
