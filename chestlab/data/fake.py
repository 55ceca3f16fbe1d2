"""Random images in a real benchmark's folder layout, for trying the pipeline end to end without the
data (tests, throughput benchmarks): ``make_fake_cub(root)`` then ``load_dataset("cub200", ..., data_root=root)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_fake_cub", "make_fake_inshop"]


def make_fake_cub(root: str | Path, num_classes: int = 200, per_class: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Write ``CUB_200_2011/`` (images.txt, image_class_labels.txt, classes.txt, images/) under ``root``
    with ``per_class`` random ``size``×``size`` JPEGs per class; classes 1..num_classes (the reader
    splits 1–100 train / 101–200 test, so keep ``num_classes > 100``). Returns the CUB folder."""
    base = Path(root) / "CUB_200_2011"
    rng = np.random.default_rng(seed)
    images, labels, classes = [], [], []
    i = 0
    for c in range(1, num_classes + 1):
        name = f"{c:03d}.Fake_Bird_{c}"
        classes.append(f"{c} {name}")
        (base / "images" / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            i += 1
            rel = f"{name}/Fake_Bird_{c}_{k}.jpg"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(base / "images" / rel)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return base


def make_fake_inshop(root: str | Path, train_items: int = 20, test_items: int = 10, per_item: int = 4,
                     size: int = 32, seed: int = 0) -> Path:
    """Write ``list_eval_partition.txt`` + ``img/…`` (In-shop layout) with random images: training
    items, and test items whose images alternate between query and gallery. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(1, train_items + test_items + 1):
        item_id = f"id_{item:08d}"
        folder = "WOMEN/Dresses" if item % 2 else "MEN/Denim"
        for k in range(per_item):
            rel = f"img/{folder}/{item_id}/{k:02d}_1_front.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / rel)
            status = "train" if item <= train_items else ("query" if k % 2 == 0 else "gallery")
            rows.append(f"{rel} {item_id} {status}")
    (root / "list_eval_partition.txt").write_text(f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n")
    return root
