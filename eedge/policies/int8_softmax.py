"""TFLite's int8 softmax from a per-scale exp table: softmax_s8's bytes at a fraction of the cost.

Every int8 exit decision starts from the int8 softmax of the exit's logits.
``eedge.reference.int8_kernels.softmax_s8`` computes it as TFLite does, with
gemmlowp's fixed-point exp per logit (about a hundred numpy calls per call,
~300 us for one sample: the cascade's whole int8 decision). But a logit's
exponential depends only on its distance d = max - logit, and an int8 row's
distances are 0..255, so the exponentials of one input scale are known in
advance: the generated C runtime looks them up the same way
(``eedge_softmax_lut_s8`` in firmware_templates/runtime/src/softmax.c). What
remains per row is the sum, gemmlowp's reciprocal of it (a function of the
sum alone, cached) and one rounding multiply per class, in Python integers for
one row (``ExpTable.row``) or numpy for many (``ExpTable.probabilities``).
Both are checked byte for byte against ``softmax_s8`` in
tests/policies/test_int8_softmax.py.
"""

from __future__ import annotations

import functools

import numpy as np

from eedge.reference.fixedpoint import exp_on_negative_values, srdhm, wrap_int32
from eedge.reference.int8_kernels import softmax_multiplier, softmax_s8

INT32_MAX = (1 << 31) - 1
INT32_MIN = -(1 << 31)
# a row's sum of Q12.19 exponentials (each <= 2^19) must not wrap at 2^32, where
# softmax_s8's headroom differs from the C runtime's; wider rows use softmax_s8 itself
MAX_COLS = 4096


def _srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul on Python ints (as fixedpoint.srdhm)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    return v >> 31 if v >= 0 else -((-v) >> 31)  # C division: toward zero


def _saturating_shift_left(x: int, k: int) -> int:
    limit = (1 << (31 - k)) - 1
    return INT32_MAX if x > limit else (INT32_MIN if x < -limit else x << k)


def _one_over_one_plus_x(a: int) -> int:
    """gemmlowp 1/(1+x), Q0.31 in, Q1.30 out (fixedpoint.one_over_one_plus_x on one int)."""
    s = a + INT32_MAX
    t = s + (1 if s >= 0 else -1)
    half = t // 2 if t >= 0 else -((-t) // 2)
    x = 1515870810 + _srdhm(half, -1010580540)
    for _ in range(3):
        p = (1 << 29) - _srdhm(half, x)
        x = x + _saturating_shift_left(_srdhm(x, p), 2)
    return _saturating_shift_left(x, 1)


@functools.lru_cache(maxsize=65536)
def row_scale(total: int) -> tuple[int, int]:
    """(reciprocal, exponent) of a row whose Q12.19 exponentials sum to ``total`` (> 0):
    what turns each exponential into q. Depends on the sum alone, so it is cached."""
    total &= 0xFFFFFFFF
    headroom = 32 - total.bit_length()
    shifted = ((total << headroom) & 0xFFFFFFFF) - (1 << 31)  # top bit set: no wrap
    return _one_over_one_plus_x(shifted), (12 - headroom) + 31 - 8


class ExpTable:
    """The int8 softmax of one input scale (and beta), from its 256 exponentials."""

    def __init__(self, in_scale: float, beta: float = 1.0) -> None:
        self.in_scale, self.beta = in_scale, beta
        mult, shift, diff_min = softmax_multiplier(in_scale, beta)
        diff = -np.arange(256, dtype=np.int64)
        valid = diff >= diff_min
        scaled = srdhm(wrap_int32(diff << shift), mult)
        # a distance below diff_min counts as exp 0: it adds nothing to the sum and its
        # q is -128, as softmax_s8 gives it
        exps = np.where(valid, exp_on_negative_values(np.where(valid, scaled, 0)), 0)
        self.exps = exps.astype(np.int64)                       # Q0.31, indexed by d
        self.parts = (self.exps + 2048) >> 12                   # rdbpot(exp, 12), exp >= 0
        self._exps = self.exps.tolist()
        self._parts = self.parts.tolist()

    def scale(self, logits: list[int]) -> tuple[list[int], int, int]:
        """One row of int8 logits -> each class's distance from the row's maximum, and
        the (reciprocal, exponent) of the row's sum: what :meth:`q` needs."""
        top = max(logits)
        distances = [top - v for v in logits]
        reciprocal, exponent = row_scale(sum(map(self._parts.__getitem__, distances)))
        return distances, reciprocal, exponent

    def q(self, distance: int, reciprocal: int, exponent: int) -> int:
        """q of one class ``distance`` below its row's maximum. Non-increasing in the
        distance, so a row's largest q is q(0, ...): an exit deciding on the top class
        (or two) needs no other."""
        # reciprocal and exponentials are >= 0, so srdhm and the rounding shift are
        # plain round-half-up shifts; the result is >= 0, so only 127 can clip
        return min(127, ((((reciprocal * self._exps[distance] + (1 << 30)) >> 31)
                          + (1 << (exponent - 1))) >> exponent) - 128)

    def row(self, logits: list[int]) -> list[int]:
        """q (int8 probabilities) of one row of int8 logits, in Python ints."""
        distances, reciprocal, exponent = self.scale(logits)
        exps = self._exps
        half = 1 << (exponent - 1)
        return [min(127, ((((reciprocal * exps[d] + (1 << 30)) >> 31) + half) >> exponent)
                    - 128) for d in distances]

    def probabilities(self, logits_q: np.ndarray) -> np.ndarray:
        """int8 probabilities of int8 logits, softmax over the last axis (any leading axes)."""
        x = np.asarray(logits_q)
        if x.size == 0:
            return np.zeros(x.shape, np.int8)
        if x.shape[-1] > MAX_COLS:
            return softmax_s8(x, self.in_scale, self.beta)
        x = x.astype(np.int64)
        distances = x.max(axis=-1, keepdims=True) - x
        exps = self.exps[distances]
        totals = self.parts[distances].sum(axis=-1)
        scales = np.array([row_scale(t) for t in totals.reshape(-1).tolist()],
                          dtype=np.int64).reshape(*totals.shape, 2)
        reciprocal, exponent = scales[..., :1], scales[..., 1:]
        v = (reciprocal * exps + (1 << 30)) >> 31
        out = ((v + (np.int64(1) << (exponent - 1))) >> exponent) - 128
        return np.minimum(out, 127).astype(np.int8)


@functools.lru_cache(maxsize=256, typed=True)
def exp_table(in_scale: float, beta: float = 1.0) -> ExpTable:
    """The table of one exit's logit scale, built once."""
    return ExpTable(in_scale, beta)
