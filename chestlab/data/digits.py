"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 real images, no download).

Split by class as metric learning does: digits 0-4 train, 5-9 test (so test label 0 is digit 5;
``classes`` holds the digit names).  The super-classes are a stroke-shape grouping of our own
choosing, meant only to give plots a second level:

``round``     0, 6, 8, 9  -- closed loops
``straight``  1, 4, 7     -- straight strokes
``curvy``     2, 3, 5     -- open curves

Every split sees all three groups.  Pixels (0..16 in the source) are scaled to [0, 1] and
normalised with mean 0.5 / std 0.5, so values lie in [-1, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import SPLITS, TensorMetricDataset
from .options import Option

__all__ = ["DigitsDataset", "DIGIT_GROUPS", "OPTIONS"]

#: super-class name -> digits in it.
DIGIT_GROUPS: dict[str, tuple[int, ...]] = {
    "round": (0, 6, 8, 9),
    "straight": (1, 4, 7),
    "curvy": (2, 3, 5),
}
#: ``data_options`` of ``digits``: the side of the (upsampled) images, up to 256 (1797 images x 256**2 = 118 M floats).
OPTIONS: dict[str, Option] = {
    "image_size": Option("int", 1, 256),
    "transform": Option("callable", nullable=True),
}
TRAIN_DIGITS: tuple[int, ...] = (0, 1, 2, 3, 4)
TEST_DIGITS: tuple[int, ...] = (5, 6, 7, 8, 9)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # local: sklearn is slow to import

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


class DigitsDataset(TensorMetricDataset):
    """One split of sklearn's digits; yields ``(x, label)`` with ``x`` a ``(1, S, S)`` float32.

    Args:
        split: ``"train"`` (digits 0-4, 901 images) or ``"test"`` (digits 5-9, 896 images).
        image_size: side ``S`` of the returned images; 8 is native, larger values are bilinearly
            upsampled once at construction (e.g. 28 or 32 for a small CNN).
        transform: optional callable applied to each ``(1, S, S)`` tensor in ``__getitem__``.
        seed: accepted for interface uniformity; the data set is fixed.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        image_size: int = 8,
        transform: Callable[[torch.Tensor], Any] | None = None,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for 'digits'; choose one of {SPLITS}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        images, target = _load()
        digits = TEST_DIGITS if split == "test" else TRAIN_DIGITS
        rows = np.flatnonzero(np.isin(target, digits))
        x = torch.from_numpy(images[rows]).unsqueeze(1)  # (N, 1, 8, 8)
        if image_size != 8:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        group_of = {d: g for g, (_, ds) in enumerate(DIGIT_GROUPS.items()) for d in ds}
        super().__init__(
            ((x - 0.5) / 0.5).contiguous(),
            target[rows] - digits[0],
            [str(d) for d in digits],
            [group_of[d] for d in digits],
            list(DIGIT_GROUPS),
            transform=transform,
            name="digits",
            split=split,
        )
