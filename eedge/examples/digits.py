"""The built-in example's data: scikit-learn's digits (8x8 images, 10 classes).

The data ships with scikit-learn, so the demo and the tests never download
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


@dataclass
class DigitsSplits:
    """Stratified train/validation/test splits, images scaled to [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_splits(seed: int = 0, val_fraction: float = 0.2,
                       test_fraction: float = 0.2) -> DigitsSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
        stratify=y_rest)
    return DigitsSplits(x_train, y_train, x_val, y_val, x_test, y_test)
