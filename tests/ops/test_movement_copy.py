"""The strided-copy descriptors the C generator emits move the bytes numpy moves.

Random transposes (up to 5-D) and strided slices (negative steps included)
are turned into loop descriptors by ``eedge.ops.movement_copy`` and executed
here by a Python model of the two C kernels (``eedge_strided_copy_s8`` and
``eedge_interleave2_s8``); the result must equal numpy's. This checks the
merging, ordering and interleave detection on far more shapes than the C
builds can afford; the C kernels themselves are checked by the host and QEMU
builds in the other movement tests.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eedge.ops.movement_copy import contiguous_strides, interleave2, simplify


def run_strided(loops: list[tuple[int, int, int]], src: np.ndarray, src_base: int,
                dst: np.ndarray) -> None:
    """What eedge_strided_copy_s8 does with these loops."""
    dims = [d for d, _, _ in loops]
    for index in itertools.product(*(range(d) for d in dims)):
        i = src_base + sum(k * s for k, (_, s, _) in zip(index, loops))
        o = sum(k * s for k, (_, _, s) in zip(index, loops))
        dst[o] = src[i]


def run_interleave(loops: list[tuple[int, int, int]], src: np.ndarray, dst: np.ndarray) -> None:
    """What eedge_interleave2_s8 does: rows a and b (gap apart) become a0 b0 a1 b1 ..."""
    n, gap = loops[3][0], loops[4][1]
    for index in itertools.product(*(range(d) for d, _, _ in loops[:3])):
        i = sum(k * s for k, (_, s, _) in zip(index, loops[:3]))
        o = sum(k * s for k, (_, _, s) in zip(index, loops[:3]))
        for k in range(n):
            dst[o + 2 * k] = src[i + k]
            dst[o + 2 * k + 1] = src[i + gap + k]


@pytest.mark.parametrize("seed", range(60))
def test_transpose_descriptors_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 6))
    dims = [1] + [int(d) for d in rng.integers(1, 5, rank - 1)]
    perm = [0] + [int(p) + 1 for p in rng.permutation(rank - 1)]
    if seed % 4 == 0:   # channel shuffles (H, W, g, C/g) -> (H, W, C/g, g): the interleave
        dims = [1, int(rng.integers(1, 4)), int(rng.integers(1, 4)), 2, int(rng.integers(1, 6))]
        perm = [0, 1, 2, 4, 3]
    x = np.arange(int(np.prod(dims)), dtype=np.int32).reshape(dims)
    expected = np.transpose(x, perm).reshape(-1)
    strides = contiguous_strides(dims)
    out_dims = [dims[p] for p in perm]
    args = (out_dims, [strides[p] for p in perm], contiguous_strides(out_dims))
    got = np.full(expected.size, -1, np.int32)
    pairs = interleave2(*args)
    if pairs is not None:
        run_interleave(pairs, x.reshape(-1), got)
    else:
        run_strided(simplify(*args), x.reshape(-1), 0, got)
    assert np.array_equal(got, expected)


def test_the_channel_shuffle_uses_the_interleave() -> None:
    dims, perm = [1, 16, 16, 2, 16], [0, 1, 2, 4, 3]
    strides = contiguous_strides(dims)
    out_dims = [dims[p] for p in perm]
    loops = interleave2(out_dims, [strides[p] for p in perm], contiguous_strides(out_dims))
    assert loops is not None and loops[3] == (16, 1, 2) and loops[4] == (2, 16, 1)
    assert loops[2] == (256, 32, 32)   # H and W merged into one loop


@pytest.mark.parametrize("seed", range(60))
def test_strided_slice_descriptors_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    rank = int(rng.integers(2, 5))
    dims = [1] + [int(d) for d in rng.integers(1, 7, rank - 1)]
    x = np.arange(int(np.prod(dims)), dtype=np.int32).reshape(dims)
    index, starts, counts, steps = [slice(None)], [0], [1], [1]
    for d in dims[1:]:
        step = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        start = int(rng.integers(0, d))
        count = len(range(start, -1 if step < 0 else d, step))
        index.append(slice(start, start + count * step if start + count * step >= 0 else None,
                           step))
        starts.append(start)
        counts.append(count)
        steps.append(step)
    expected = x[tuple(index)].reshape(-1)
    strides = contiguous_strides(dims)
    base = sum(s * st for s, st in zip(starts, strides))
    loops = simplify(counts, [st * s for st, s in zip(steps, strides)],
                     contiguous_strides(counts))
    got = np.full(expected.size, -1, np.int32)
    run_strided(loops, x.reshape(-1), base, got)
    assert np.array_equal(got, expected)


def test_contiguous_dimensions_merge_into_one_run() -> None:
    """A channel split of NHWC: rows of C/2 bytes, H and W merged."""
    dims = [1, 8, 8, 32]
    part = [1, 8, 8, 16]
    loops = simplify(part, contiguous_strides(dims), contiguous_strides(part))
    assert loops[-2:] == [(64, 32, 16), (16, 1, 1)]
    whole = simplify(dims, contiguous_strides(dims), contiguous_strides(dims))
    assert whole[-1] == (2048, 1, 1) and all(d == 1 for d, _, _ in whole[:-1])
