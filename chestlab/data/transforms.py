"""Image transforms of the paper (Hyp-ViT / CHEST protocol) for the benchmark datasets.

Train: ``RandomResizedCrop(size, bicubic)`` + ``RandomHorizontalFlip`` + ImageNet normalisation.
Test:  ``Resize(size * 256 / 224)`` on the short side (256 for 224) + ``CenterCrop(size)`` + the
same normalisation.  Both return ``(3, size, size)`` float32 tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["paper_transforms", "IMAGENET_MEAN", "IMAGENET_STD", "EVAL_SPLITS"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Splits that get the deterministic evaluation transform.
EVAL_SPLITS: tuple[str, ...] = ("test", "query", "gallery")


def paper_transforms(split: str, size: int = 224) -> Callable[[Any], torch.Tensor]:
    """The paper's augmentation for ``split``: PIL image (any size) -> ``(3, size, size)`` float32.

    Args:
        split: ``"train"`` for the random augmentation; ``"test"``, ``"query"`` or ``"gallery"``
            for the deterministic resize + centre crop.
        size: output side (224 in the paper; use e.g. 32 or 64 in tests and on CPU).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    # Imported here: torchvision takes ~2 s to import and the embedded datasets never need it.
    from torchvision.transforms import InterpolationMode, v2

    tail = [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    bicubic = InterpolationMode.BICUBIC
    if split == "train":
        head = [
            v2.RandomResizedCrop(size, interpolation=bicubic, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    elif split in EVAL_SPLITS:
        # 256/224 = 8/7: the crop keeps the central 87.5 % of the short side, at any size.
        head = [
            v2.Resize(round(size * 256 / 224), interpolation=bicubic, antialias=True),
            v2.CenterCrop(size),
        ]
    else:
        raise ValueError(f"unknown split {split!r}; choose 'train' or one of {EVAL_SPLITS}")
    # Geometry first, on the PIL image (PIL's antialiased bicubic, as the reference code does).
    return v2.Compose([*head, *tail])
