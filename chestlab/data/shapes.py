"""``shapes``: small procedurally drawn colour images with a two-level hierarchy.

Six *families* (super-classes) of eight *variants* (classes) each, 48 classes in all:

============  ==================================================================================
polygon       triangle, square, pentagon, hexagon -- filled, and the same four as outlines
star          4, 5, 6 and 8 points, each spiky (inner radius 0.35) and chunky (0.6)
round         disc, ellipse, ring, elliptic ring, semicircle, pac-man, crescent, target
cross         3, 4, 5 and 6 arms from a centre; T, L, H and an arrow
pattern       a square with 2 or 3 stripes, 2x2 or 3x3 checks, a frame, a frame with a dot,
              a window (four panes), a round hole
group         2, 3, 4 or 5 dots; 2 or 3 small squares; 2 or 3 small triangles
============  ==================================================================================

Every image gets a random pose (any rotation, translation, size), random foreground and background
colours (always with contrast) and pixel noise, so only the shape identifies the class.  Shapes are
drawn 4x larger with :mod:`PIL.ImageDraw` and box-downsampled, which anti-aliases the edges.

Split: within each family, four variants train and four are test (``TEST_VARIANTS``), chosen so a
test variant is a neighbour of train variants (square between triangle and pentagon; chunky
5-star between spiky 4- and 6-stars...) -- unseen species of known families.

Generation is deterministic from ``seed`` (about 1 s for 48 x 50 images at 32 px on one core) and
memoised per options; ``cache_dir`` also stores the uint8 images in a ``.npz`` for later sessions.
"""

from __future__ import annotations

import colorsys
import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .base import SPLITS, TensorMetricDataset, memoise
from .options import Option

__all__ = ["ShapesDataset", "make_shapes", "FAMILIES", "TEST_VARIANTS", "SHAPES_MEAN", "SHAPES_STD", "OPTIONS",
           "check_shapes_options"]

#: family -> its eight variant names, in class order.
FAMILIES: dict[str, tuple[str, ...]] = {
    "polygon": ("triangle", "square", "pentagon", "hexagon",
                "triangle_outline", "square_outline", "pentagon_outline", "hexagon_outline"),
    "star": ("star4_spiky", "star4_chunky", "star5_spiky", "star5_chunky",
             "star6_spiky", "star6_chunky", "star8_spiky", "star8_chunky"),
    "round": ("disc", "ellipse", "ring", "elliptic_ring", "semicircle", "pacman", "crescent", "target"),
    "cross": ("arms3", "arms4", "arms5", "arms6", "tee", "ell", "aitch", "arrow"),
    "pattern": ("stripes2", "stripes3", "checks2", "checks3", "frame", "frame_dot", "window", "holed"),
    "group": ("dots2", "dots3", "dots4", "dots5", "squares2", "squares3", "triangles2", "triangles3"),
}  # fmt: skip

#: Variants held out as test classes (4 per family); the other 24 classes train.
TEST_VARIANTS: frozenset[str] = frozenset({
    "square", "hexagon", "triangle_outline", "pentagon_outline",
    "star4_chunky", "star5_spiky", "star6_chunky", "star8_spiky",
    "ellipse", "elliptic_ring", "pacman", "target",
    "arms4", "arms6", "ell", "arrow",
    "stripes3", "checks2", "frame_dot", "holed",
    "dots3", "dots5", "squares3", "triangles2",
})  # fmt: skip

#: Per-channel normalisation applied to the [0, 1] images (maps them to about [-1, 1]).
SHAPES_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SHAPES_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

_SUPERSAMPLE = 4

#: The most floats the 48 classes' images may hold: 48 x per_class x 3 x size**2 <= 2**29 (2 GiB of
#: float32; 224-pixel images for a ViT: up to 74 per class).
MAX_FLOATS = 2**29

#: ``data_options`` of ``shapes``: each option's type and range (the total: :func:`check_shapes_options`).
OPTIONS: dict[str, Option] = {
    "size": Option("int", 8, 512),
    "per_class": Option("int", 1, 100_000),
    "noise": Option("float", 0, 10),
    "cache_dir": Option("path", nullable=True),
    "transform": Option("callable", nullable=True),
}


def check_shapes_options(options: dict[str, Any]) -> None:
    """Refuse options whose images would not fit in :data:`MAX_FLOATS` (one-line ``ValueError``)."""
    size, per_class = options.get("size", 32), options.get("per_class", 50)
    n = 48 * per_class * 3 * size**2
    if n > MAX_FLOATS:
        raise ValueError(f"size = {size} with per_class = {per_class} makes 48 x {per_class} images of 3 x {size} x {size} "
                         f"= {n:,} floats; allowed: at most {MAX_FLOATS:,}: fewer per_class or a smaller size")
Poly = tuple[np.ndarray, int]  # (k, 2) vertices in the unit disc, fill 255 (ink) or 0 (hole)


# ---------------------------------------------------------------------------------------------
# Canonical shapes: lists of filled polygons in [-1, 1]^2, drawn in order (later ones on top).
def _ngon(n: int, r: float = 1.0, cx: float = 0.0, cy: float = 0.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, t0=0.0, t1=2 * math.pi, k=48):
    t = np.linspace(t0, t1, k, endpoint=abs(t1 - t0 - 2 * math.pi) > 1e-9)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    t = math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _arm(angle: float, width: float = 0.32, length: float = 1.0) -> np.ndarray:
    """A bar from the centre to ``length`` along ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    w = width / 2
    pts = np.array([[0.0, -w], [length, -w], [length, w], [0.0, w]])
    return pts @ np.array([[c, s], [-s, c]])


def _canonical(variant: str) -> list[Poly]:
    ink, hole = 255, 0
    ngons = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
    if variant.split("_")[0] in ngons:  # not "squares2": that is a group
        n = ngons[variant.split("_")[0]]
        out = [(_ngon(n, phase=math.pi / 2), ink)]
        if variant.endswith("outline"):
            out.append((_ngon(n, r=0.55, phase=math.pi / 2), hole))
        return out
    if variant.startswith("star"):
        pts, kind = variant[4:].split("_")
        return [(_star(int(pts), 0.35 if kind == "spiky" else 0.6), ink)]
    if variant.startswith("arms"):
        n = int(variant[4:])
        return [(_arm(2 * math.pi * i / n + math.pi / 2), ink) for i in range(n)] + [
            (_ngon(n, 0.2), ink)
        ]
    if variant.startswith("dots"):
        n = int(variant[4:])
        spots = [(0.0, 0.0)] if n == 5 else []
        ring = _ngon(n - len(spots), r=0.62, phase=math.pi / 2 if n != 2 else 0.0)
        return [(_ellipse(0.3, 0.3, x, y, k=20), ink) for x, y in [*ring, *spots]]
    if variant.startswith(("squares", "triangles")):
        n = int(variant[-1])
        centres = _ngon(n, r=0.55, phase=math.pi / 2 if n == 3 else 0.0)
        sides = 4 if variant.startswith("squares") else 3
        return [(_ngon(sides, 0.42, x, y, phase=math.pi / 4 if sides == 4 else math.pi / 2), ink)
                for x, y in centres]  # fmt: skip
    square = _rect(-0.8, -0.8, 0.8, 0.8)
    table: dict[str, list[Poly]] = {
        "disc": [(_ellipse(1.0, 1.0), ink)],
        "ellipse": [(_ellipse(1.0, 0.5), ink)],
        "ring": [(_ellipse(1.0, 1.0), ink), (_ellipse(0.6, 0.6), hole)],
        "elliptic_ring": [(_ellipse(1.0, 0.6), ink), (_ellipse(0.65, 0.3), hole)],
        "semicircle": [(_ellipse(1.0, 1.0, 0, -0.3, 0, math.pi), ink)],
        "pacman": [(np.vstack([[0, 0], _ellipse(1.0, 1.0, t0=0.6, t1=2 * math.pi - 0.6)]), ink)],
        "crescent": [(_ellipse(1.0, 1.0), ink), (_ellipse(0.85, 0.85, 0.45, 0.0), hole)],
        "target": [(_ellipse(1.0, 1.0), ink), (_ellipse(0.7, 0.7), hole), (_ellipse(0.35, 0.35), ink)],
        "tee": [(_rect(-0.9, 0.5, 0.9, 0.9), ink), (_rect(-0.2, -0.9, 0.2, 0.9), ink)],
        "ell": [(_rect(-0.7, -0.9, -0.3, 0.9), ink), (_rect(-0.7, -0.9, 0.7, -0.5), ink)],
        "aitch": [(_rect(-0.8, -0.9, -0.4, 0.9), ink), (_rect(0.4, -0.9, 0.8, 0.9), ink),
                  (_rect(-0.8, -0.2, 0.8, 0.2), ink)],
        "arrow": [(_rect(-0.9, -0.18, 0.2, 0.18), ink),
                  (np.array([[0.1, -0.6], [0.95, 0.0], [0.1, 0.6]]), ink)],
        "stripes2": [(_rect(-0.8, -0.8, 0.8, -0.2), ink), (_rect(-0.8, 0.2, 0.8, 0.8), ink)],
        "stripes3": [(_rect(-0.8, y, 0.8, y + 0.32), ink) for y in (-0.8, -0.16, 0.48)],
        "checks2": [(_rect(-0.8, -0.8, 0.0, 0.0), ink), (_rect(0.0, 0.0, 0.8, 0.8), ink)],
        "checks3": [(_rect(-0.8 + 0.533 * i, -0.8 + 0.533 * j, -0.267 + 0.533 * i, -0.267 + 0.533 * j), ink)
                    for i in range(3) for j in range(3) if (i + j) % 2 == 0],
        "frame": [(square, ink), (_rect(-0.45, -0.45, 0.45, 0.45), hole)],
        "frame_dot": [(square, ink), (_rect(-0.5, -0.5, 0.5, 0.5), hole), (_ellipse(0.25, 0.25), ink)],
        "window": [(square, ink), *[(_rect(x, y, x + 0.6, y + 0.6), hole)
                                   for x in (-0.7, 0.1) for y in (-0.7, 0.1)]],
        "holed": [(square, ink), (_ellipse(0.45, 0.45), hole)],
    }  # fmt: skip
    return table[variant]


def _class_table() -> tuple[list[str], list[int], list[str]]:
    classes, to_family = [], []
    for f, (family, variants) in enumerate(FAMILIES.items()):
        classes += [f"{family}/{v}" for v in variants]
        to_family += [f] * len(variants)
    return classes, to_family, list(FAMILIES)


def _render_mask(polys: list[Poly], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one randomly posed shape; returns a ``(size, size)`` float32 coverage mask in [0, 1]."""
    big = size * _SUPERSAMPLE
    angle = rng.uniform(0, 2 * math.pi)
    radius = rng.uniform(0.28, 0.42) * big  # shape's unit disc -> this many pixels
    centre = big / 2 + rng.uniform(-0.12, 0.12, size=2) * big
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]]) * radius
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for pts, fill in polys:
        xy = pts @ rot + centre
        draw.polygon([tuple(p) for p in xy.tolist()], fill=fill)
    small = canvas.resize((size, size), Image.Resampling.BOX)  # box filter = exact area coverage
    return np.asarray(small, dtype=np.float32) / 255.0


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random foreground and background colour with a guaranteed brightness gap."""
    fg = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1.0), rng.uniform(0.7, 1.0))
    bg = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.05, 0.35))
    if rng.uniform() < 0.5:  # light-on-dark or dark-on-light
        fg, bg = bg, fg
    return np.array(fg, dtype=np.float32), np.array(bg, dtype=np.float32)


def _generate(seed: int, size: int, per_class: int, noise: float) -> np.ndarray:
    classes, _, _ = _class_table()
    images = np.empty((len(classes) * per_class, size, size, 3), dtype=np.uint8)
    for k, name in enumerate(classes):
        polys = _canonical(name.split("/")[1])
        rng = np.random.default_rng([seed, k])  # per-class stream: classes are independent
        for i in range(per_class):
            mask = _render_mask(polys, size, rng)[..., None]
            fg, bg = _colours(rng)
            img = bg * (1 - mask) + fg * mask + noise * rng.standard_normal((size, size, 3))
            images[k * per_class + i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return images


def _load_cache(file: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached images, or ``None`` if the file is absent, unreadable or of the wrong shape
    (then it is simply regenerated and overwritten)."""
    try:
        with np.load(file) as z:
            images = z["images"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return images if images.shape == shape and images.dtype == np.uint8 else None


@memoise(maxsize=4)
def make_shapes(
    seed: int = 0,
    size: int = 32,
    per_class: int = 50,
    noise: float = 0.05,
    cache_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate (or load from ``cache_dir``) all shapes images, both splits.

    Returns:
        ``(images, labels)``: ``(48 * per_class, size, size, 3)`` uint8 and ``(48 * per_class,)``
        int64 global class indices (order of :data:`FAMILIES`).  Read-only; memoised.
    """
    if size < 8 or per_class < 1:
        raise ValueError(f"shapes needs size >= 8 and per_class >= 1, got size={size}, per_class={per_class}")
    n = len(_class_table()[0]) * per_class
    file = None if cache_dir is None else (
        Path(cache_dir) / f"shapes_s{seed}_px{size}_n{per_class}_noise{noise:g}.npz"
    )  # fmt: skip
    images = _load_cache(file, (n, size, size, 3)) if file is not None else None
    if images is None:
        images = _generate(seed, size, per_class, noise)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, images=images)
            tmp.replace(file)  # atomic: a concurrent reader never sees half a file
    labels = np.repeat(np.arange(len(_class_table()[0])), per_class)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


class ShapesDataset(TensorMetricDataset):
    """One split of ``shapes``; yields ``(x, label)``, ``x`` a ``(3, size, size)`` float32 tensor
    normalised with :data:`SHAPES_MEAN`/:data:`SHAPES_STD` (values about in [-1, 1]).

    Args:
        split: ``"train"`` (24 classes) or ``"test"`` (the 24 :data:`TEST_VARIANTS`).
        seed: generation seed.
        size: image side in pixels (32 default; 64 for more detail).
        per_class: images per class (50 default).
        noise: std of the per-pixel Gaussian noise, in [0, 1] intensity units.
        cache_dir: optional folder for a ``.npz`` cache of the generated images.
        transform: optional callable applied to each ``(3, H, W)`` tensor in ``__getitem__``.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = 0,
        size: int = 32,
        per_class: int = 50,
        noise: float = 0.05,
        cache_dir: str | Path | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for 'shapes'; choose one of {SPLITS}")
        cache = None if cache_dir is None else str(cache_dir)  # str: memoisation needs hashables
        images, labels = make_shapes(seed, size, per_class, noise, cache)
        classes, to_family, families = _class_table()
        want_test = split == "test"
        keep = [k for k, c in enumerate(classes) if (c.split("/")[1] in TEST_VARIANTS) == want_test]
        local = np.full(len(classes), -1)
        local[keep] = np.arange(len(keep))
        rows = np.flatnonzero(np.isin(labels, keep))
        x = torch.from_numpy(images[rows].copy()).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
        super().__init__(
            ((x - mean) / std).contiguous(),
            local[labels[rows]],
            [classes[k] for k in keep],
            [to_family[k] for k in keep],
            families,
            transform=transform,
            name="shapes",
            split=split,
        )
        self.class_ids = torch.as_tensor(keep)  # global class index of each local class

    @staticmethod
    def denormalise(x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: ``(..., 3, H, W)`` -> values in [0, 1] for display."""
        mean = torch.tensor(SHAPES_MEAN, device=x.device).view(3, 1, 1)
        std = torch.tensor(SHAPES_STD, device=x.device).view(3, 1, 1)
        return (x * std + mean).clamp(0, 1)
