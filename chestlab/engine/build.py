"""Builders: everything a run is made of, from a :class:`~chestlab.settings.TrainConfig` — the
device, the datasets, the model, the loss (from the registry) and the optimizer's parameter groups.
The trainer, the dashboard and the tests call the same functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import data, models
from ..losses import Loss, LossContext, LossOutput, get_loss
from ..settings import ConfigError, TrainConfig, check

__all__ = [
    "resolve_device",
    "validate",
    "in_memory",
    "euclid_space",
    "resolved",
    "apply_resolved",
    "Datasets",
    "create_datasets",
    "create_model",
    "create_criterion",
    "create_optimizer",
    "group_hparams",
    "apply_optim_settings",
    "create_batch_sampler",
    "RandomBatches",
    "System",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU; ``cuda`` without CUDA, or ``cuda:N`` beyond
    the machine's devices -> a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {name}: CUDA is not available here; use device=cpu or auto")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError(f"device = {name}: this machine has {n} CUDA device(s); allowed: cuda:0..cuda:{n - 1}, cuda, cpu or auto")
    return device


def validate(cfg: TrainConfig) -> None:
    """Refuse a configuration that breaks a rule between settings (:func:`chestlab.settings.check`):
    ``ConfigError`` with the first problem's one-line message."""
    errors = [p for p in check(cfg) if p.level == "error"]
    if errors:
        raise ConfigError("; ".join(p.message for p in errors))


def in_memory(ds: Any) -> bool:
    """An embedded dataset held as one tensor with no per-item transform: index ``ds.data`` directly."""
    return getattr(ds, "transform", "x") is None and hasattr(ds, "data")


def euclid_space(cfg: TrainConfig) -> str:
    """Where L_E lives: ``cfg.euclid_space``, or for ``auto`` the loss's rule (CHEST: the Sec. 4.4
    rule, ``W x^E + b`` exactly while eta_H = 0; others: ``x^E``)."""
    if cfg.euclid_space != "auto":
        return cfg.euclid_space
    return get_loss(cfg.loss).auto_euclid_space(cfg.section())


def resolved(cfg: TrainConfig) -> dict[str, Any]:
    """The model settings the builders resolve from others, by name: their values under ``cfg``
    (``euclid_space``: ``auto`` is the loss's rule, :func:`euclid_space`). The model and the loss are
    built with them; a live change may change them (:func:`apply_resolved`)."""
    return {"euclid_space": euclid_space(cfg)}


def apply_resolved(cfg: TrainConfig, model: nn.Module, criterion: Loss) -> None:
    """Set the resolved model settings (:func:`resolved`) under ``cfg`` on the built ``model`` and
    ``criterion``, each on those that hold it (the loss only where it reads it: CHEST's proxies
    follow its ``euclid_space``). A setting given explicitly resolves to itself: no change."""
    for name, value in resolved(cfg).items():
        for obj in (model, criterion):
            if name in vars(obj):
                setattr(obj, name, value)


@dataclass
class Datasets:
    train: Any
    test: Any
    splits: tuple[str, ...]  # the dataset's splits (In-shop adds query / gallery)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if hasattr(self.train, "sample_shape") and in_memory(self.train):
            return tuple(self.train.sample_shape)
        x, _ = self.train[0]
        return tuple(x.shape)


def load_split(cfg: TrainConfig, split: str) -> Any:
    return data.load_dataset(cfg.dataset, split, data_root=cfg.data_root, seed=cfg.seed, **dict(cfg.data_options))


def create_datasets(cfg: TrainConfig) -> Datasets:
    """The training and test splits of ``cfg.dataset`` (test classes are unseen in training)."""
    return Datasets(load_split(cfg, "train"), load_split(cfg, "test"), data.dataset_info(cfg.dataset).splits)


def create_model(cfg: TrainConfig, input_shape: tuple[int, ...]) -> models.CHESTModel:
    """Backbone (from the backbone registry) + hyperbolic head (D_H, c, r)."""
    backbone = models.create_backbone(cfg.backbone, input_shape, cfg.dim_e, pretrained=cfg.pretrained, weights=cfg.weights)
    return models.CHESTModel(backbone, cfg.dim_h, cfg.c, cfg.r, euclid_space=euclid_space(cfg))


def create_criterion(cfg: TrainConfig, model: models.CHESTModel, num_classes: int) -> Loss:
    """The registered loss ``cfg.loss`` built from its settings section."""
    ctx = LossContext(num_classes=num_classes, dim_e=model.backbone.out_dim, dim_h=cfg.dim_h, head=model.head,
                      seed=cfg.seed, euclid_space=euclid_space(cfg))
    return get_loss(cfg.loss).build(cfg.section(), ctx)


class RandomBatches(torch.utils.data.Sampler):
    """Uniformly random batches that ignore the labels (for unsupervised losses): the batch of
    "epoch" (= step) ``e`` depends only on ``(seed, e)``, like :class:`chestlab.data.MPerClassSampler`."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = int(n), int(batch_size), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) & (2**64 - 1))  # a large seed wraps
        yield torch.randperm(self.n, generator=g)[: self.batch_size].tolist()


def create_batch_sampler(cfg: TrainConfig, labels: Tensor, rank: int = 0, *, supervised: bool = True):
    """One batch per step: m per class (supervised losses) or uniformly random (unsupervised ones)."""
    seed = cfg.seed * 1_000_003 + rank
    if not supervised:
        return RandomBatches(len(labels), cfg.batch_size, seed)
    return data.MPerClassSampler(labels, cfg.m_per_class, cfg.batch_size, num_batches=1, seed=seed)


def group_hparams(name: str, cfg: TrainConfig, criterion: Loss) -> dict[str, float]:
    """``{"lr", "weight_decay"}`` of the optimizer group ``name``: ``backbone`` (lr), ``head`` (lr_head
    or lr), both with ``weight_decay``; the loss's own groups as the loss says (:meth:`Loss.group_hparams`)."""
    if name == "backbone":
        return {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if name == "head":
        return {"lr": cfg.lr_head or cfg.lr, "weight_decay": cfg.weight_decay}
    return criterion.group_hparams(name, cfg)


def create_optimizer(cfg: TrainConfig, model: nn.Module, criterion: Loss) -> torch.optim.Optimizer:
    """AdamW with named groups: ``backbone`` (lr), ``head`` (lr_head or lr), then the loss's own
    parameters in the groups it declares (:meth:`Loss.param_groups`: ``proxies``, with lr_proxy and no
    weight decay; HIER's losses add ``hier``)."""
    groups = [{"name": name, "params": list(getattr(model, name).parameters()), **group_hparams(name, cfg, criterion)}
              for name in ("backbone", "head")]
    groups += criterion.param_groups(cfg, frozenset(id(p) for p in model.parameters()))
    return torch.optim.AdamW(groups)


def apply_optim_settings(optimizer: torch.optim.Optimizer, cfg: TrainConfig, criterion: Loss) -> None:
    """Set every group's learning rate and weight decay from ``cfg`` (live changes): :func:`group_hparams`."""
    for g in optimizer.param_groups:
        g.update(group_hparams(g["name"], cfg, criterion))


class System(nn.Module):
    """Model + loss in one module, so DistributedDataParallel all-reduces the loss's proxies too."""

    def __init__(self, model: models.CHESTModel, criterion: Loss) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, x: Tensor, labels: Tensor, index: Optional[Tensor] = None) -> LossOutput:
        x_e, x_h = self.model(x)
        if index is not None:  # losses that look samples up by their index (unsupervised pseudo-labels)
            return self.criterion(x_e, x_h, labels, index=index)
        return self.criterion(x_e, x_h, labels)
