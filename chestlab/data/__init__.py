"""Datasets for metric learning, split by class (test classes are unseen in training).

Every dataset yields ``(x, label)`` and exposes ``labels`` ``(N,)``, ``classes``, ``num_classes``,
``superclasses`` and ``hierarchy`` (class -> super-class), see :mod:`chestlab.data.base`.

Embedded (offline, deterministic from ``seed``):

``tree``      vectors from a synthetic class tree behind a fixed nonlinear map  (:mod:`.tree`)
``shapes``    procedurally drawn colour shapes, 6 families x 8 variants          (:mod:`.shapes`)
``digits``    scikit-learn's 8x8 digits, 0-4 train / 5-9 test                    (:mod:`.digits`)

Read from ``data_root`` with the conventional splits (:mod:`.benchmarks`): ``cub200``,
``cars196``, ``sop``, ``inshop``, ``cifar100``.

    >>> from chestlab.data import load_dataset, MPerClassSampler
    >>> train = load_dataset("shapes", "train", seed=0)
    >>> sampler = MPerClassSampler(train.labels, m=4, batch_size=32)
"""

from .base import SPLITS, DatasetError, MetricDataset, TensorMetricDataset
from .benchmarks import (
    ArrayImageDataset,
    ImageListDataset,
    load_cars196,
    load_cifar100,
    load_cub200,
    load_inshop,
    load_sop,
    resolve_data_root,
)
from .digits import DigitsDataset
from .options import Option
from .registry import (DatasetInfo, available_datasets, dataset_info, dataset_options, load_dataset, path_options,
                       register_dataset)
from .sampler import MPerClassSampler
from .shapes import ShapesDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, paper_transforms
from .tree import TreeDataset

__all__ = [
    "SPLITS",
    "DatasetError",
    "MetricDataset",
    "TensorMetricDataset",
    "ImageListDataset",
    "ArrayImageDataset",
    "TreeDataset",
    "ShapesDataset",
    "DigitsDataset",
    "DatasetInfo",
    "load_dataset",
    "dataset_info",
    "path_options",
    "dataset_options",
    "Option",
    "register_dataset",
    "available_datasets",
    "MPerClassSampler",
    "paper_transforms",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_cub200",
    "load_cars196",
    "load_sop",
    "load_inshop",
    "load_cifar100",
    "resolve_data_root",
]
