"""One name -> one dataset builder: :func:`load_dataset`, :func:`dataset_info`, :func:`register_dataset`.

    >>> from chestlab.data import load_dataset, dataset_info
    >>> train = load_dataset("tree", "train", seed=0)
    >>> dataset_info("shapes", size=64).input_shape
    (3, 64, 64)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import SPLITS, MetricDataset
from .benchmarks import (
    INSHOP_SPLITS,
    load_cars196,
    load_cifar100,
    load_cub200,
    load_inshop,
    load_sop,
)
from .digits import OPTIONS as DIGITS_OPTIONS
from .digits import DigitsDataset
from .options import IMAGE_OPTIONS, Option, check_options
from .shapes import FAMILIES, TEST_VARIANTS, ShapesDataset, check_shapes_options
from .shapes import OPTIONS as SHAPES_OPTIONS
from .tree import OPTIONS as TREE_OPTIONS
from .tree import TreeDataset, check_tree_options, make_tree_world, tree_info

__all__ = ["DatasetInfo", "load_dataset", "dataset_info", "dataset_options", "register_dataset", "available_datasets",
           "path_options"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset produces, so a model registry can pick a backbone without loading data.

    Attributes:
        name: registry name.
        kind: ``"vector"`` (``x`` is ``(D,)``) or ``"image"`` (``x`` is ``(C, H, W)``).
        input_shape: shape of one ``x`` with the given options.
        num_classes: classes per split (``None`` where only the files can tell).
        num_superclasses: size of the hierarchy's upper level (``None`` if it depends on files).
        splits: accepted ``split`` values.
        embedded: True if generated or bundled (no ``data_root`` needed).
        description: one line for menus.
    """

    name: str
    kind: Literal["vector", "image"]
    input_shape: tuple[int, ...]
    num_classes: Mapping[str, int | None] = field(default_factory=dict)
    num_superclasses: int | None = None
    splits: tuple[str, ...] = SPLITS
    embedded: bool = True
    description: str = ""

    @property
    def input_dim(self) -> int | None:
        """``D`` for vector data, else ``None``."""
        return self.input_shape[0] if self.kind == "vector" else None

    @property
    def channels(self) -> int | None:
        """Image channels (1 or 3), else ``None``."""
        return self.input_shape[0] if self.kind == "image" else None

    @property
    def image_size(self) -> int | None:
        """Image side in pixels, else ``None``."""
        return self.input_shape[-1] if self.kind == "image" else None


Builder = Callable[..., MetricDataset]
InfoFn = Callable[..., DatasetInfo]


@dataclass(frozen=True)
class _Entry:
    builder: Builder  # builder(split, *, data_root, seed, **options)
    info: InfoFn  # info(**options) -> DatasetInfo
    splits: tuple[str, ...]
    options: tuple[str, ...]  # accepted **options (seed and data_root are always accepted)
    specs: Mapping[str, Option]  # their types and ranges (an option without one is passed as given)
    check: Callable[[dict[str, Any]], None] | None  # the total size the options make together


_REGISTRY: dict[str, _Entry] = {}


def _keyword_names(*fns: Callable[..., Any]) -> tuple[str, ...]:
    names: list[str] = []
    for fn in fns:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in names:
                names.append(p.name)
    return tuple(n for n in names if n not in ("split", "seed", "data_root"))


def register_dataset(
    name: str,
    builder: Builder,
    info: InfoFn,
    *,
    splits: tuple[str, ...] = SPLITS,
    options: tuple[str, ...] | None = None,
    specs: Mapping[str, Option] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
) -> None:
    """Add a dataset to the registry.

    Args:
        name: the name :func:`load_dataset` will accept.
        builder: ``builder(split, *, data_root, seed, **options) -> MetricDataset``.
        info: ``info(**options) -> DatasetInfo``.
        splits: accepted splits.
        options: accepted option names; default: the builder's keyword parameters.
        specs: the options' types and ranges (:class:`chestlab.data.options.Option`), checked before
            the builder runs; an option without a spec is passed as given.
        check: ``check(options)`` raises a one-line ``ValueError`` when the options together make a
            dataset too big to hold (after each one passed its spec).
        overwrite: allow replacing an existing name.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = _Entry(builder, info, tuple(splits), options or _keyword_names(builder), dict(specs or {}), check)


def available_datasets() -> tuple[str, ...]:
    """Registered names, in registration order."""
    return tuple(_REGISTRY)


def path_options(name: str | None = None) -> tuple[str, ...]:
    """The options of dataset ``name`` (of every dataset when None) that name a file or folder (their
    spec's kind is ``"path"``): a link or the dashboard may not set them (``chestlab.settings.Setting.path``)."""
    entries = [_entry(name)] if name is not None else list(_REGISTRY.values())
    return tuple(dict.fromkeys(o for e in entries for o, spec in e.specs.items() if spec.kind == "path"))


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {available_datasets()}")
    return _REGISTRY[name]


def _check_options(name: str, entry: _Entry, options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for dataset {name!r}; it accepts {sorted(entry.options)}"
        )
    checked = check_options(options, entry.specs)
    if entry.check is not None:
        entry.check(checked)
    return checked


def dataset_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` of dataset ``name`` checked without generating or reading anything: known names,
    each one's type and range, and the total size they make (``tree``: at most 65 536 leaves and
    2**25 generated values). Returns them normalised (``3.0`` -> ``3``); a bad one raises a one-line
    ``ValueError`` naming it and what is allowed."""
    return _check_options(name, _entry(name), options)


def load_dataset(
    name: str,
    split: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **options: Any,
) -> MetricDataset:
    """Build split ``split`` of dataset ``name``.

    Args:
        name: one of :func:`available_datasets` (``"tree"``, ``"shapes"``, ``"digits"``,
            ``"cub200"``, ``"cars196"``, ``"sop"``, ``"inshop"``, ``"cifar100"``).
        split: ``"train"`` or ``"test"`` (In-shop also ``"query"``/``"gallery"``); test classes
            are never seen in training.
        data_root: folder with the benchmark files (default ``$CHESTLAB_DATA_ROOT`` or
            ``./data``); ignored by the embedded datasets.
        seed: generation seed of the embedded datasets (the benchmarks are fixed).
        **options: dataset-specific, e.g. ``depth``/``branching`` (tree), ``size`` (shapes),
            ``image_size``/``transform`` (images).  Unknown ones raise ``ValueError``.

    Raises:
        ValueError: unknown name, split or option.
        DatasetError: benchmark files missing or corrupt (a ``ValueError`` too).
    """
    entry = _entry(name)
    if split not in entry.splits:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; choose one of {entry.splits}")
    return entry.builder(split, data_root=data_root, seed=seed, **_check_options(name, entry, options))


def dataset_info(name: str, **options: Any) -> DatasetInfo:
    """Describe dataset ``name`` (input kind and shape, class counts) for the given options,
    without generating or reading it."""
    entry = _entry(name)
    return entry.info(**_check_options(name, entry, options))


# ---------------------------------------------------------------------------------------------
# Built-in datasets
def _tree(split: str, *, data_root: Any = None, seed: int = 0, **options: Any) -> MetricDataset:
    return TreeDataset(split, seed=seed, **options)


def _tree_info(**options: Any) -> DatasetInfo:
    t = tree_info(**options)
    return DatasetInfo(
        "tree", "vector", t["input_shape"], t["num_classes"], t["num_superclasses"],
        description="vectors from a synthetic class tree behind a fixed random nonlinear map",
    )  # fmt: skip


def _shapes(split: str, *, data_root: Any = None, seed: int = 0, **options: Any) -> MetricDataset:
    return ShapesDataset(split, seed=seed, **options)


def _shapes_info(*, size: int = 32, **_: Any) -> DatasetInfo:
    n_test = len(TEST_VARIANTS)
    n_all = sum(len(v) for v in FAMILIES.values())
    return DatasetInfo(
        "shapes", "image", (3, size, size), {"train": n_all - n_test, "test": n_test}, len(FAMILIES),
        description="procedurally drawn colour shapes, 6 families x 8 variants",
    )  # fmt: skip


def _digits(split: str, *, data_root: Any = None, seed: int = 0, **options: Any) -> MetricDataset:
    return DigitsDataset(split, seed=seed, **options)


def _digits_info(*, image_size: int = 8, **_: Any) -> DatasetInfo:
    return DatasetInfo(
        "digits", "image", (1, image_size, image_size), {"train": 5, "test": 5}, 3,
        description="scikit-learn's 8x8 handwritten digits, 0-4 train / 5-9 test",
    )  # fmt: skip


def _benchmark_info(
    name: str, classes: Mapping[str, int], supers: int | None, default_size: int, description: str,
    splits: tuple[str, ...] = SPLITS,
) -> InfoFn:  # fmt: skip
    def info(*, image_size: int = default_size, **_: Any) -> DatasetInfo:
        return DatasetInfo(
            name, "image", (3, image_size, image_size), dict(classes), supers, splits,
            embedded=False, description=description,
        )  # fmt: skip

    return info


register_dataset("tree", _tree, _tree_info, options=_keyword_names(TreeDataset, make_tree_world), specs=TREE_OPTIONS,
                 check=check_tree_options)
register_dataset("shapes", _shapes, _shapes_info, options=_keyword_names(ShapesDataset), specs=SHAPES_OPTIONS,
                 check=check_shapes_options)
register_dataset("digits", _digits, _digits_info, options=_keyword_names(DigitsDataset), specs=DIGITS_OPTIONS)
register_dataset(
    "cub200", load_cub200,
    _benchmark_info("cub200", {"train": 100, "test": 100}, None, 224, "CUB-200-2011 birds"), specs=IMAGE_OPTIONS,
)  # fmt: skip
register_dataset(
    "cars196", load_cars196,
    _benchmark_info("cars196", {"train": 98, "test": 98}, None, 224, "Stanford Cars196"), specs=IMAGE_OPTIONS,
)  # fmt: skip
register_dataset(
    "sop", load_sop,
    _benchmark_info("sop", {"train": 11318, "test": 11316}, 12, 224, "Stanford Online Products"), specs=IMAGE_OPTIONS,
)  # fmt: skip
register_dataset(
    "inshop", load_inshop,
    _benchmark_info(
        "inshop", {"train": 3997, "test": 3985, "query": 3985, "gallery": 3985}, None, 224,
        "In-shop Clothes Retrieval (DeepFashion)", INSHOP_SPLITS,
    ),
    splits=INSHOP_SPLITS, specs=IMAGE_OPTIONS,
)  # fmt: skip
register_dataset(
    "cifar100", load_cifar100,
    _benchmark_info("cifar100", {"train": 50, "test": 50}, 20, 32, "CIFAR-100 split by fine class"), specs=IMAGE_OPTIONS,
)  # fmt: skip
