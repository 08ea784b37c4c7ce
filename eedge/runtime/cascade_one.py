"""``Cascade.infer`` for one sample: the batch code's decisions with as few numpy calls as
exactness allows.

Why it exists: a stream (a camera, a server's requests) runs the cascade one sample at
a time, and there the batch code's array bookkeeping (masks, fancy indexing, a copy of
every hand-off's remaining rows: ~40 us per stage) costs more than the small stages
themselves. Each numpy call costs ~0.3-1 us whatever its size (twice that between
stages, whose kernels evict numpy's code from the caches), so this path decides on
the exit's row in Python floats and ints, and computes the exact softmax and score
that a result reports only when they are read (OneSampleResult), or when a score is
too close to a threshold for the scalar estimate to decide.

Where eedge.runtime._rowdecide is built (setup.py compiles it; an SSH device's source
zip and a machine without a compiler lack it), the stage loop, the input's finiteness
check and int8 quantization, the float exits' estimate decisions and the int8 exits'
decisions run in C (``OneSample.infer``), ~1 us per stage instead of ~4-5; entropy,
ensembles and every float score near an edge are still decided here in Python, which
is also the whole path without it (``_infer_python``). Both paths are tested against
the batch code.

The contract: every field of a result equals, bit for bit, the row the batch code
(``Cascade._decide``, ``_ensemble``, ``_running_mean``) gives the same sample, and so
do the decisions: a threshold calibrated on the batch code's scores (calibration,
profiling and ``eedge run`` use it) takes exactly the same samples here, also at a
score one ulp away. tests/runtime/test_fast_path.py checks every field for every
criterion, threshold, window, gate, budget offset, ensemble mode, head bundle and
runtime. How the float scores stay exact:

- a decision is taken on a libm estimate of the score only when it is more than
  1e-12 (C + 8) away from the threshold and the window's edge: the estimate is
  within 1e-15 (C + 8) of numpy's score (:func:`estimate_score`); closer, the exact
  score decides;
- the exact softmax's exponentials are numpy's (``np.exp`` on the row, shifted by its
  maximum in float64 as ``criteria.softmax`` does): numpy's SIMD exp differs from
  libm's ``math.exp`` in ~5 % of values, so no scalar replacement is exact;
- their sum is numpy's pairwise summation (eight accumulators, blocks of 128)
  replayed on Python floats, checked against numpy once per process
  (:func:`numpy_sums_match`; numpy's own sum is used if a numpy version sums
  differently);
- divisions, maxima, sorting and differences are IEEE operations, equal in Python;
- where none of that applies (non-finite float logits, int8 rows too wide for the
  exp table, entropy's logarithms) numpy or the batch code itself decides the row.
"""

from __future__ import annotations

import functools
import heapq
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from eedge.ir.graph import QuantParams
from eedge.ir.layout import to_channels_last
from eedge.policies.criteria import gate_score, score_from_probabilities
from eedge.policies.fixed_point import ENTROPY_LUT, threshold_q
from eedge.policies.int8_softmax import MAX_COLS, ExpTable, exp_table, row_scale
from eedge.reference.int8_kernels import quantize_input
from eedge.runtime.result import CascadeResult, OneSampleResult

try:  # the compiled stage loop, input check and float decision (see _rowdecide.c)
    from eedge.runtime import _rowdecide as compiled
except ImportError:  # not built (no compiler at install), or an SSH device's source zip
    compiled = None  # (tests set it to None to check the pure-Python path too)

if TYPE_CHECKING:
    from eedge.runtime.cascade import Cascade

# how a decided sample's probabilities and confidence are computed: (function, arguments)
Fields = tuple[Callable[..., tuple[np.ndarray, np.ndarray]], tuple[Any, ...]]
# a decided sample: (prediction, exit, rejected, its probabilities and confidence)
Decision = tuple[int, int, bool, Fields]
CRITERIA = frozenset(("max_softmax", "margin", "entropy", "gate"))
_ENTROPY_LUT: list[int] = ENTROPY_LUT.tolist()
_F64 = np.float64
_F32 = np.float32
_F32_ZERO = np.zeros(1, dtype=_F32)
_exp = math.exp


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


_BOOLS = (_read_only(np.zeros(1, dtype=bool)), _read_only(np.ones(1, dtype=bool)))
_NO_ROWS = _read_only(np.zeros(0, dtype=np.int64))  # pending of a decided sample
_ROW = _read_only(np.zeros(1, dtype=np.int64))      # the sample's row, for the batch methods


class ExitPlan(NamedTuple):
    """What deciding at one exit needs, looked up once."""

    exit: int
    table: ExpTable | None               # int8 softmax table (None: float, or too wide)
    quant: tuple[float, int] | None      # (scale, zero point) of an int8 exit tensor
    classes: int                         # class columns
    gate: int | None                     # gate column, or None
    final: bool                          # the exit that always decides
    width: int | None                    # the result's columns if wider than the classes
    margin: float                        # the float estimate decides this far from an edge


class OneSample:
    """The batch-1 path of one :class:`~eedge.runtime.cascade.Cascade`.

    Built once per cascade; the policy (thresholds, criteria, windows, budget offset,
    ensemble members) is read from the cascade on every call, since calibration and
    profiling change it between calls.
    """

    def __init__(self, cascade: Cascade) -> None:
        self.cascade = cascade
        self.input = self._input_plan()
        self.floats = self.input is not None and self.input[1].kind == "f"
        self.quant = self._input_quant()
        # the quantized input's channels-last shape, and the planes its layout moves last
        self.quantized_shape: tuple[int, ...] = ()
        self.channels = 1
        if self.input is not None:
            _, _, batched, _, layout = self.input
            self.quantized_shape = channels_last_view(np.empty(batched, np.int8), layout).shape
            if (layout, len(batched)) in (("NCHW", 4), ("NCL", 3)):  # channels_last_view's
                self.channels = batched[1]
        self.exits = self._exit_plans()
        # per stage: index, exit (or None), the exit's plan (None: the batch code decides),
        # the runner's borrowing call, input and output names. Nothing is dropped from a
        # one-sample store: the stages' outputs are the runners' own buffers (borrowed)
        # and the input is the caller's.
        self.stages = [(stage["index"], stage["exit"], self.exits.get(stage["index"]),
                        getattr(runner, "run_borrowed", runner.run), inputs, outputs,
                        self._compiled_args(self.exits.get(stage["index"])))
                       for stage, runner, (inputs, outputs)
                       in zip(cascade.stages, cascade.runners, cascade._stage_names)]
        self.width = int(cascade.exits[-1]["num_classes"])
        # shared read-only (1,) int64 arrays of 0 .. the widest exit's classes, and -1
        # (ints[-1]): a one-sample result's predictions, exit index and confidence_q
        widest = max([self.width, len(cascade.exits)] +
                     [plan.classes for plan in self.exits.values() if plan is not None])
        self.ints = [_read_only(np.full(1, i, np.int64)) for i in [*range(widest), -1]]
        numpy_sums_match()  # checked once per process, before the first timed call
        # per count of stages run: stage_seconds' zeros for the rest, stage_samples
        stages = len(self.stages)
        self.padding = [([0.0] * (stages - ran), [1] * ran + [0] * (stages - ran))
                        for ran in range(stages + 1)]
        self._limits: dict[tuple[Any, ...], tuple[int, int | None]] = {}
        # _rowdecide.run_stages' view of the stages: (run, inputs, outputs, exit or -1,
        # float decision arguments or None)
        self.compiled_stages = tuple((run, tuple(inputs), tuple(outputs),
                                      -1 if k is None else k, args)
                                     for _, k, _, run, inputs, outputs, args in self.stages)

    def _compiled_args(self, plan: ExitPlan | None) -> tuple[Any, ...] | None:
        """The helper's arguments for an exit: float (classes, gate column or -1, margin,
        final); int8 (classes, gate column or -1, final, the exp table's exps and parts,
        row_scale, the integer limits' function); None where only Python decides
        (exits with no plan or no exp table)."""
        if plan is None:
            return None
        column = -1 if plan.gate is None else plan.gate
        if plan.quant is None:
            return (plan.classes, column, plan.margin, plan.final)
        if plan.table is None:
            return None
        return (plan.classes, column, plan.final, plan.table.exps, plan.table.parts,
                row_scale, functools.partial(self._int8_limits, plan))

    def _int8_limits(self, plan: ExitPlan, threshold: float | None, low: float | None,
                     criterion: str) -> tuple[int, int | None]:
        """:meth:`_limits_q` for the helper (it passes the policy it read)."""
        return self._limits_q(plan, criterion, threshold, low,
                              self.cascade.threshold_offset_q)

    # ----------------------------------------------------------------- plans
    def _input_plan(self) -> tuple[str, np.dtype, tuple[int, ...], tuple[int, ...],
                                   str | None] | None:
        """(name, dtype, shape with and without the batch axis, the layout to convert
        from to channels-last, if any) when a plain array can skip prepare_inputs'
        general checks; None for several inputs or a model fixed to a batch other than
        1."""
        inputs = self.cascade.inputs
        if len(inputs) != 1:
            return None
        spec = inputs[0]
        shape = list(spec["shape"])
        if not isinstance(shape[0], str) and shape[0] != 1:
            return None
        if not all(isinstance(d, int) for d in shape[1:]):
            return None
        layout = spec.get("layout") if self.cascade.format.startswith("tflite") else None
        return spec["name"], np.dtype(spec["dtype"]), (1, *shape[1:]), tuple(shape[1:]), layout

    def _input_quant(self) -> tuple[QuantParams, tuple[np.float32, np.float32, int],
                                    SmallQuantizer] | None:
        """The single float input's quantization: its params, (float32 scale, clamp
        limit, zero point) for :func:`quantize_one` and the :func:`quantize_small`
        plan; None when the input stays as it is."""
        if self.input is None:
            return None
        name, dtype, _, _, _ = self.input
        quant = self.cascade._input_quant.get(name)
        if quant is None or dtype == np.int8:
            return None
        scale = np.float32(quant.scale[0])
        zero_point = int(quant.zero_point[0])
        return (quant, (scale, np.float32(min(1e37 * float(scale), 3e38)), zero_point),
                SmallQuantizer.of(scale, zero_point))

    def _exit_plans(self) -> dict[int, ExitPlan | None]:
        """Per exit stage its plan, or None where only the batch code decides (an exit
        tensor that is not one row of columns)."""
        cascade = self.cascade
        width = cascade.exits[-1]["num_classes"]
        out: dict[int, ExitPlan | None] = {}
        for stage, io in zip(cascade.stages, cascade.io):
            k = stage["exit"]
            if k is None:
                continue
            spec = io["outputs"][0]
            if len(spec["shape"]) != 2:
                out[stage["index"]] = None
                continue
            column = cascade.gates[k]
            classes = column if column is not None else int(cascade.exits[k]["num_classes"])
            table = quant = None
            if spec.get("quant"):
                params = QuantParams.from_json(spec["quant"])
                quant = (params.scale[0], params.zero_point[0])
                table = exp_table(params.scale[0]) if classes <= MAX_COLS else None
            out[stage["index"]] = ExitPlan(k, table, quant, classes, column,
                                           k == cascade.final_exit,
                                           None if classes == width else width,
                                           1e-12 * (classes + 8))
        return out

    # ----------------------------------------------------------------- input
    def prepare(self, x: Any) -> dict[str, np.ndarray] | None:
        """The store for one C-contiguous sample of the model's dtype, or None to let
        ``Cascade.stage_inputs`` check and convert (also whenever the finiteness check
        fails, so the error is its error)."""
        plan = self.input
        if plan is None or type(x) is not np.ndarray:
            return None
        name, dtype, batched, single, layout = plan
        if (x.dtype is not dtype and x.dtype != dtype) or not x.flags.c_contiguous:
            return None
        shape = x.shape
        if shape != batched:
            if shape != single:
                return None
            x = x[None]
        quant = self.quant
        if self.floats and self.cascade.check_finite:
            # x.x is NaN or infinite iff a value is, or the float32 BLAS sum of squares
            # overflows (then stage_inputs checks value by value): one call at any size.
            # The helper sums small inputs in double; numpy's BLAS dot the rest (faster
            # there; a process timing 2000 of them on the residual 96x96 input between
            # 300 us waits used no more CPU than without; vdot, unlike dot, does not
            # warn about the overflow)
            squares = None if compiled is None else compiled.sum_squares(x)
            if squares is None:
                squares = float(np.vdot(x, x))
            if not math.isfinite(squares):
                return None
            if quant is not None and dtype == _F32:
                if compiled is not None:  # quantized and made channels-last in one pass
                    out = np.empty(self.quantized_shape, np.int8)
                    if compiled.quantize(x, out, quant[1][0], quant[1][2],
                                         self.channels) is not None:
                        return {name: out}
                small = quant[2]
                if squares < small.bound and x.size <= 4096:  # every |x| < 32000 scales
                    return {name: quantize_small(x, small, layout)}
                # every |x| below 1e30 scales: the quotient cannot overflow
                return {name: quantize_one(x, quant[1], layout, squares >= small.far)}
        if layout is not None:
            x = to_channels_last(x, layout)
        if quant is not None:
            x = quantize_input(x, quant[0])
        return {name: x}

    # ----------------------------------------------------------------- the cascade
    def run(self, x: Any, early_exit: bool) -> CascadeResult | None:
        """``Cascade.infer`` on one plain sample, or None if ``prepare`` declines it."""
        store = self.prepare(x)
        return None if store is None else self.infer(store, early_exit)

    def infer(self, store: dict[str, np.ndarray], early_exit: bool) -> CascadeResult:
        """``Cascade.infer`` for one sample: the same stages, decisions and result."""
        cascade = self.cascade
        if cascade.running_members or cascade.ensemble_members or compiled is None:
            return self._infer_python(store, early_exit)
        seconds: list[float] = []
        criteria, thresholds, window_low = cascade.criteria, cascade.thresholds, \
            cascade.window_low
        run_stages = compiled.run_stages
        decision: Decision | bool | None = False
        result: CascadeResult | None = None
        position = 0
        while position < len(self.stages):
            # the stages and their compiled decisions, up to where Python must decide
            position, decided = run_stages(self.compiled_stages, position, store, seconds,
                                           criteria, thresholds, window_low, early_exit)
            if position == len(self.stages):
                break
            index, k, plan, _, _, outputs, _ = self.stages[position]
            if decided is not None:
                decision = compiled_decision(plan, store[outputs[0]], decided, criteria[k])
                break
            decision, result, store = self._python_exit(k, index, plan, store[outputs[0]],
                                                        store, result, early_exit)
            if decision is not False:
                break
            position += 1
        return self._finish(decision, result, seconds, store)

    def _infer_python(self, store: dict[str, np.ndarray], early_exit: bool
                      ) -> CascadeResult:
        """infer without the compiled helper, and with ensembles."""
        cascade = self.cascade
        running, ensemble = cascade.running_members, cascade.ensemble_members
        members = running or ensemble
        seconds: list[float] = []
        clock = time.perf_counter
        decision: Decision | bool | None = False  # True: a batch method recorded it
        result: CascadeResult | None = None  # made when a batch method needs one
        total: np.ndarray | None = None      # an ensemble's sum so far
        for index, k, plan, run, inputs, outputs, _ in self.stages:
            start = clock()
            values = run([store[inputs[0]]] if len(inputs) == 1 else
                         [store[name] for name in inputs])
            seconds.append(clock() - start)
            for name, value in zip(outputs, values):
                store[name] = value
            if k is None:
                continue
            if members and (k in running or k in ensemble):
                result = result or self._blank()
                if k in running:
                    total, rows, store = cascade._running_mean(k, index, total, _ROW, store,
                                                               result, early_exit)
                else:
                    total, rows, store = cascade._ensemble(k, index, total, _ROW, store,
                                                           result)
                decision = rows.size == 0
            else:
                decision, result, store = self._python_exit(k, index, plan, values[0], store,
                                                            result, early_exit)
            if decision is not False:
                break
        return self._finish(decision, result, seconds, store)

    def _python_exit(self, k: int, index: int, plan: ExitPlan | None, tensor: np.ndarray,
                     store: dict[str, np.ndarray], result: CascadeResult | None,
                     early_exit: bool) -> tuple[Decision | bool, CascadeResult | None,
                                                dict[str, np.ndarray]]:
        """Exit k's decision in Python (:meth:`decide`), or by the batch code where that
        declines: (decision, the result if one was made, the store)."""
        decision = None if plan is None else self.decide(plan, tensor, early_exit)
        if decision is None:  # the batch code decides this row
            result = result or self._blank()
            rows, store = self.cascade._decide(k, index, _ROW, store, result, early_exit)
            decision = rows.size == 0
        return decision, result, store

    def _finish(self, decision: Decision | bool, result: CascadeResult | None,
                seconds: list[float], store: dict[str, np.ndarray]) -> CascadeResult:
        """The result: decision a tuple (decided here), True (a batch method recorded
        it in result) or False (no exit took it)."""
        padding, samples = self.padding[len(seconds)]
        seconds += padding
        samples = samples.copy()
        if type(decision) is tuple:
            if result is None:
                prediction, k, rejected, fields = decision
                ints = self.ints
                return OneSampleResult(ints[prediction], ints[k], seconds, samples,
                                       _BOOLS[rejected], ints[-1], _NO_ROWS, fields)
            self._record(result, decision)
        elif result is None:
            result = self._blank()
        result.stage_seconds, result.stage_samples = seconds, samples
        if decision is False:  # no exit took it: a head bundle's sample for the server
            result.pending = np.zeros(1, dtype=np.int64)
            result.handoff = {name: np.array(store[name])
                              for name in self.cascade.cut_tensors}
        return result

    def _blank(self) -> CascadeResult:
        """An undecided result for the batch methods to write into."""
        return CascadeResult(np.full(1, -1, dtype=np.int64), np.zeros((1, self.width), _F32),
                             np.full(1, -1, dtype=np.int64), np.zeros(1, dtype=_F32), [], [],
                             np.zeros(1, dtype=bool), np.full(1, -1, dtype=np.int64),
                             _NO_ROWS, {})

    @staticmethod
    def _record(result: CascadeResult, decision: Decision) -> None:
        """Write a decision into a result the batch code made (after it decided an earlier
        exit for this row, which then went on)."""
        prediction, k, rejected, (compute, args) = decision
        probabilities, confidence = compute(*args)
        result.predictions[0] = prediction
        result.probabilities[0] = probabilities[0]
        result.exit_index[0] = k
        result.confidence[0] = confidence[0]
        result.rejected[0] = rejected

    # ----------------------------------------------------------------- decisions
    def decide(self, plan: ExitPlan, tensor: np.ndarray, early_exit: bool
               ) -> Decision | bool | None:
        """``Cascade._decide`` for one sample: the decision if it leaves at this exit,
        False if it goes on, None (nothing decided) for what only ``_decide`` handles:
        non-finite float logits (refused or, without check_finite, scored as numpy
        does), unknown criteria, int8 rows too wide for the exp table. ``tensor`` is
        the exit tensor (the stage's first output), one row."""
        cascade = self.cascade
        k = plan.exit
        criterion = cascade.criteria[k]
        column = plan.gate
        if column is None and criterion == "gate":  # only the final exit, which always decides
            criterion = "max_softmax"
        elif criterion not in CRITERIA:
            return None
        threshold = cascade.thresholds[k] if early_exit else None
        low = cascade.window_low[k] if early_exit or plan.final else None
        logits, gate = exit_row(tensor, column)
        if plan.quant is not None:
            return self._decide_int8(plan, logits, gate, criterion, threshold, low)
        return self._decide_float(plan, logits, gate, criterion, threshold, low)

    def _decide_float(self, plan: ExitPlan, logits: list[float], gate: float | None,
                      criterion: str, threshold: float | None, low: float | None
                      ) -> Decision | bool | None:
        """The float decision (``_decide``'s float branch), on numpy's exact score
        wherever a threshold or window edge is near it."""
        if not math.isfinite(sum(logits) if gate is None else sum(logits) + gate):
            return None
        top = max(logits)
        final = plan.final
        width = plan.width
        if final and low is None:  # decides whatever its score
            return (logits.index(top), plan.exit, False,
                    (float_fields, (logits, top, gate, criterion, width, None)))
        if criterion != "entropy" and -600.0 <= top <= 600.0:
            # the libm estimate decides where the exact score cannot be on the other
            # side of the threshold or the window's edge. (An exit without threshold or
            # window scores too: eedge profile times forced exit paths with the earlier
            # exits off and must see what a stream's samples cost there.)
            estimate = _exp(top) / sum(map(_exp, logits)) if criterion == "max_softmax" \
                else estimate_score(logits, top, gate, criterion)  # (inlined: the common one)
            margin = plan.margin
            if low is not None and estimate + margin < low:  # below the window: rejected
                return (logits.index(top), plan.exit, True,
                        (float_fields, (logits, top, gate, criterion, width, None)))
            if low is None or estimate - margin >= low:  # not rejected
                if final or (threshold is not None and estimate - margin >= threshold):
                    return (logits.index(top), plan.exit, False,
                            (float_fields, (logits, top, gate, criterion, width, None)))
                if threshold is None or estimate + margin < threshold:
                    return False
        exact = exact_score(logits, top, gate, criterion)
        score = exact[0]
        rejected = low is not None and score < low
        if not (final or (threshold is not None and score >= threshold) or rejected):
            return False
        return (logits.index(top), plan.exit, rejected,
                (float_fields, (logits, top, gate, criterion, width, exact)))

    def _decide_int8(self, plan: ExitPlan, logits: list[int], gate: int | None,
                     criterion: str, threshold: float | None, low: float | None
                     ) -> Decision | bool | None:
        """The fixed-point decision (``_decide``'s int8 branch) on Python ints."""
        table = plan.table
        if table is None:
            return None
        if not plan.final or low is not None:  # else it decides whatever its score
            # q falls with the distance from the row's maximum: max_softmax and margin
            # need the q of the top one or two classes only, the gate none
            if criterion == "gate":
                score: int = gate  # type: ignore[assignment]
            elif criterion == "entropy":
                lut = _ENTROPY_LUT
                score = -sum([lut[v + 128] for v in table.row(logits)])
            else:
                distances, reciprocal, exponent = table.scale(logits)
                if criterion == "max_softmax":
                    score = table.q(0, reciprocal, exponent)
                elif plan.classes > 1:
                    first, second = heapq.nsmallest(2, distances)
                    score = table.q(first, reciprocal, exponent) - \
                        table.q(second, reciprocal, exponent)
                else:
                    score = table.q(0, reciprocal, exponent) + 128
            limit, low_limit = self._limits_q(plan, criterion, threshold, low,
                                              self.cascade.threshold_offset_q)
            rejected = low_limit is not None and score < low_limit
            if not (score >= limit or rejected):
                return False
        else:
            rejected = False
        return int8_decision(plan, logits, gate, criterion, logits.index(max(logits)),
                             rejected)

    def _limits_q(self, plan: ExitPlan, criterion: str, threshold: float | None,
                  low: float | None, offset: int) -> tuple[int, int | None]:
        """``_decide``'s integer threshold (with the budget offset) and window edge,
        computed once per setting (thresholds change between calls in calibration and
        profiling)."""
        key = (plan.exit, criterion, threshold, low, offset)
        cached = self._limits.get(key)
        if cached is not None:
            return cached
        limit = threshold_q(threshold, plan.final, criterion, plan.classes, plan.quant)
        if not plan.final and threshold is not None:
            limit += offset
        cached = (limit, None if low is None else
                  threshold_q(low, False, criterion, plan.classes, plan.quant))
        if len(self._limits) > 4096:
            self._limits.clear()
        self._limits[key] = cached
        return cached


def exit_row(tensor: np.ndarray, column: int | None) -> tuple[list[Any], Any]:
    """An exit tensor's one row as Python numbers (a copy: the tensor is a runner's
    buffer): (class logits, the gate logit at ``column`` or None)."""
    logits = tensor.tolist()[0]
    if column is None:
        return logits, None
    return logits[:column], logits[column]


def int8_decision(plan: ExitPlan, logits: list[int], gate: int | None, criterion: str,
                  index: int, rejected: bool) -> Decision:
    """An int8 exit's Decision: its lazy fields need the gate's float value."""
    gate_value = None
    if gate is not None:  # the gate's float value, for the confidence
        scale, zero_point = plan.quant  # type: ignore[misc]
        gate_value = (gate - zero_point) * scale
    return (index, plan.exit, rejected, (int8_fields, (plan.table, logits, gate_value,
                                                       criterion, plan.width)))


def compiled_decision(plan: ExitPlan, tensor: np.ndarray, decided: tuple[int, bool],
                      criterion: str) -> Decision:
    """The Decision for an exit the helper took (``decided``: class index, rejected), as
    decide would record it."""
    index, rejected = decided
    logits, gate = exit_row(tensor, plan.gate)
    if plan.gate is None and criterion == "gate":  # decide's rule: no gate column
        criterion = "max_softmax"
    if plan.quant is not None:
        return int8_decision(plan, logits, gate, criterion, index, rejected)
    return (index, plan.exit, rejected, (float_fields, (logits, logits[index], gate,
                                                        criterion, plan.width, None)))


def exact_score(logits: list[float], top: float, gate: float | None, criterion: str
                ) -> tuple[float, np.ndarray]:
    """The batch code's float64 score and softmax of one row of class logits (``top``
    their maximum, ``gate`` the gate logit), bit for bit."""
    x = np.array(logits)  # float64: the float32 values exactly
    x -= top
    np.exp(x, out=x)  # as criteria.softmax
    values = x.tolist()
    total = exact_row_sum(values)
    x /= total
    if criterion == "gate":
        e = float(np.exp(-abs(gate)))  # type: ignore[arg-type]  # criteria.sigmoid
        score = 1.0 / (1.0 + e) if gate >= 0 else e / (1.0 + e)  # type: ignore[operator]
    elif criterion == "max_softmax":
        score = max(values) / total  # division keeps the order: max(e / sum)
    elif criterion == "margin":
        if len(values) < 2:
            score = values[0] / total
        else:
            ordered = sorted(values)
            score = ordered[-1] / total - ordered[-2] / total
    else:  # entropy's logarithms: numpy's
        score = float(score_from_probabilities(x[None], criterion)[0])
    return score, x


def float_fields(logits: list[float], top: float, gate: float | None, criterion: str,
                 width: int | None, exact: tuple[float, np.ndarray] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A float exit's result fields: probabilities (1, C) and confidence (1,), float32;
    ``width`` pads the row to the result's columns, ``exact`` is exact_score's value if
    the decision needed it."""
    score, probs = exact if exact is not None else exact_score(logits, top, gate, criterion)
    return _probability_row(probs, width), _confidence(score)


def int8_fields(table: ExpTable, logits: list[int], gate: float | None, criterion: str,
                width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """An int8 exit's result fields from its int8 class logits (and the gate's float
    value): what ``_decide``'s int8 branch records."""
    probs = [(v + 128) / 256 for v in table.row(logits)]
    if criterion == "gate":
        score = float(gate_score(np.array([gate]))[0])
    else:
        score = one_confidence(probs, criterion)
    return _probability_row(np.array(probs), width), _confidence(score)


def _probability_row(probs: np.ndarray, width: int | None) -> np.ndarray:
    """float64 class probabilities -> the result's (1, width) float32 row."""
    if width is None:
        return probs.astype(_F32).reshape(1, -1)
    out = np.zeros((1, width), _F32)
    out[0, :probs.size] = probs
    return out


def _confidence(score: float) -> np.ndarray:
    out = _F32_ZERO.copy()
    out[0] = score
    return out


def exact_row_sum(values: list[float]) -> float:
    """numpy's row sum of ``values``: row_sum where it reproduces numpy's, else numpy."""
    return row_sum(values) if numpy_sums_match() else _numpy_row_sum(values)


def row_sum(values: list[float]) -> float:
    """numpy's float64 sum of one contiguous row (``np.sum(rows, axis=-1)``) on Python
    floats: pairwise summation, eight accumulators over blocks of up to 128 values, the
    rest added in order (numpy's ``pairwise_sum``, loops_utils.h.src)."""
    n = len(values)
    if n < 8:
        total = -0.0
        for v in values:
            total += v
        return total
    if n < 16:  # the common width of a classifier: one block, no accumulator loop
        v = values
        total = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
        for i in range(8, n):
            total += v[i]
        return total
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = values[:8]
        end = n - n % 8
        for i in range(8, end, 8):
            r0 += values[i]
            r1 += values[i + 1]
            r2 += values[i + 2]
            r3 += values[i + 3]
            r4 += values[i + 4]
            r5 += values[i + 5]
            r6 += values[i + 6]
            r7 += values[i + 7]
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(end, n):
            total += values[i]
        return total
    half = n // 2
    half -= half % 8
    return row_sum(values[:half]) + row_sum(values[half:])


def _numpy_row_sum(values: list[float]) -> float:
    return float(np.sum(np.array([values]), axis=-1)[0])


@functools.cache
def numpy_sums_match() -> bool:
    """Whether :func:`row_sum` gives numpy's row sums here, on rows of 1 to 300 values
    of widely spread magnitudes (a different summation order shows on most of them)."""
    rng = np.random.default_rng(0)
    for n in range(1, 301):
        rows = np.exp(rng.standard_normal((3, n)) * 4)
        expected = np.sum(rows, axis=-1)
        if any(row_sum(row) != s for row, s in zip(rows.tolist(), expected.tolist())):
            return False
    return True


def estimate_score(logits: list[float], top: float, gate: float | None,
                   criterion: str) -> float:
    """The float criterion's score in scalar float64 from libm's exp, for logits whose
    maximum ``top`` is within +-600 (so exp(top) is a normal number and no sum of
    exp(logit) can overflow); not numpy's value bit for bit (see _decide_float)."""
    if criterion == "gate":
        e = math.exp(-abs(gate))  # type: ignore[arg-type]
        return 1.0 / (1.0 + e) if gate >= 0 else e / (1.0 + e)  # type: ignore[operator]
    exp = math.exp
    if criterion == "max_softmax":
        return exp(top) / sum(map(exp, logits))  # 1 / sum(exp(v - top))
    if len(logits) < 2:
        return 1.0
    ordered = sorted(map(exp, logits))
    return (ordered[-1] - ordered[-2]) / sum(ordered)


class SmallQuantizer(NamedTuple):
    """:func:`quantize_small`'s constants for one input scale and zero point."""

    scale: np.float32
    bound: float        # sums of squares below it: every |x| < 32000 scales
    table: np.ndarray   # int8 of r + zero point, saturated, at index r (r < 0 from the end)
    far: float          # sums of squares below it: every |x| < 1e30 scales

    @classmethod
    def of(cls, scale: np.float32, zero_point: int) -> SmallQuantizer:
        rounded = np.concatenate([np.arange(0, 1 << 15), np.arange(-(1 << 15), 0)])
        table = np.clip(rounded + zero_point, -128, 127).astype(np.int8)  # every int16
        return cls(scale, (32000.0 * float(scale)) ** 2, table, (1e30 * float(scale)) ** 2)


def quantize_small(x: np.ndarray, plan: SmallQuantizer, layout: str | None) -> np.ndarray:
    """``quantize_input`` then ``to_channels_last`` for float32 inputs within 32000 scales
    of zero (checked through their sum of squares, a bound on the largest square), in
    seven numpy calls (ten in quantize_one).

    x / scale is QUANTIZE's float32 quotient, so it stays within +-32001 (the sum of up
    to 4096 float32 squares is exact to 3e-4); rounding half away from zero is
    trunc(y + copysign(0.5, y)) in float64 (exact for float32 y, see
    :func:`quantize_one`), the truncation done by the int16 conversion; adding the zero
    point and saturating is a lookup in a table of every int16, which also writes the
    channels-last copy (``np.take`` returns a C-contiguous array in the index's shape,
    here a transposed view). For inputs of up to a few thousand values: the gather
    costs ~5 ns a value, more than quantize_one's arithmetic."""
    y = (x / plan.scale).astype(_F64)
    y += np.copysign(0.5, y)
    return np.take(plan.table, channels_last_view(y.astype(np.int16), layout))


def channels_last_view(x: np.ndarray, layout: str | None) -> np.ndarray:
    """``to_channels_last`` without its copy: a view (the caller writes the copy)."""
    if layout == "NCHW" and x.ndim == 4:
        return x.transpose(0, 2, 3, 1)
    if layout == "NCL" and x.ndim == 3:
        return x.transpose(0, 2, 1)[:, None]
    if layout == "NLC" and x.ndim == 3:
        return x[:, None]
    return x


def quantize_one(x: np.ndarray, quant: tuple[np.float32, np.float32, int],
                 layout: str | None = None, clamp: bool = True) -> np.ndarray:
    """``quantize_input`` then ``to_channels_last`` in fewer passes, for inputs checked
    finite.

    Values beyond 1e37 scales saturate either way, so they are clamped first and the
    float32 division (QUANTIZE's) cannot overflow (``clamp=False``: the caller knows
    none is beyond 1e30 scales); the division writes the channels-last copy; rounding
    half away from zero is trunc(y + copysign(0.5, y)) in float64, exact for float32 y
    (y + 0.5 needs at most 25 significant bits below 2^24, and larger float32 values
    are even integers)."""
    scale, limit, zero_point = quant
    view = channels_last_view(x, layout)
    if clamp:
        view = np.maximum(np.minimum(view, limit), -limit)
    quotient = np.empty(view.shape, _F32)
    np.divide(view, scale, out=quotient)
    q = quotient.astype(_F64)
    q += np.copysign(0.5, q)
    np.trunc(q, out=q)
    q += zero_point
    np.minimum(q, 127.0, out=q)
    np.maximum(q, -128.0, out=q)  # (np.clip's Python wrapper costs as much as all the rest)
    return q.astype(np.int8)


def one_confidence(probs: list[float], criterion: str) -> float:
    """score_from_probabilities on one row (float64), as the batch code computes it."""
    if criterion == "max_softmax":
        return max(probs)
    if criterion == "margin":
        if len(probs) < 2:
            return probs[0]
        top = sorted(probs)
        return top[-1] - top[-2]
    return float(score_from_probabilities(np.array([probs]), criterion)[0])
