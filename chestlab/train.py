"""The one training engine of chestlab: the CLI, the dashboard, the notebooks and the reproduction
scripts all drive :class:`Trainer`.

A trainer is built from a :class:`TrainConfig`. ``trainer.run()`` yields typed events (step, eval,
similarity, checkpoint) that callers plot or log; ``trainer.set(c=0.1, delta_h=5, ...)`` changes
loss hyperparameters and learning rates between steps (they take effect at the next step), while
structural settings (dataset, backbone, ``K``, dimensions) need a new trainer.

Command line::

    python -m chestlab.train --preset demo-tree --steps 300 --out runs/tree
    python -m chestlab.train --preset cub200 --data-root /data --set delta_h=20 --set delta_e=1
    torchrun --nproc_per_node=2 -m chestlab.train --preset demo-tree --out runs/ddp
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import losses, metrics, models, poincare
from . import data as _data

__all__ = [
    "TrainConfig",
    "PRESETS",
    "LIVE_KEYS",
    "Trainer",
    "StepEvent",
    "EvalEvent",
    "SimilarityEvent",
    "CheckpointEvent",
    "TrainingDiverged",
    "main",
]


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Every knob of a run. Names follow the paper (``c``, ``gamma_h``, ``delta_e``, ``eta_h``, ``tau``,
    ``K``, ``M``); see :data:`HELP` for what each does and its paper value."""

    # data and model (structural: a change needs a new Trainer)
    dataset: str = "tree"
    data_root: Optional[str] = None
    data_options: dict = field(default_factory=dict)
    backbone: str = "mlp"
    pretrained: bool = False
    weights: Optional[str] = None
    dim_e: Optional[int] = 64
    dim_h: int = 16
    euclid_space: str = "auto"
    K: int = 2
    batch_size: int = 64
    m_per_class: int = 4
    loss: str = "chest"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    threads: int = 0
    proxy_std: float = 1.0
    # geometry (live)
    c: float = 0.5
    r: float = 2.3
    # CHEST loss (live)
    gamma_e: float = 5.0
    gamma_h: float = 5.0
    lambda_e: float = 20.0
    lambda_h: float = 20.0
    delta_e: float = 1.0
    delta_h: float = 1.0
    eta_e: float = 1.0
    eta_h: float = 1.0
    tau: float = 0.5
    gamma_hyp: float = 1.0
    hyphc: str = "lca"
    M: int = 32
    # pairwise cross-entropy / Mix (live)
    pair_space: str = "hyperbolic"
    t: float = 0.2
    t_e: float = 0.1
    t_h: float = 0.2
    mix_lam: float = 1.0
    # optimisation (live)
    lr: float = 1e-3
    lr_head: Optional[float] = None
    lr_proxy: float = 1e-2
    weight_decay: float = 1e-4
    grad_clip: Optional[float] = 10.0
    # schedule
    steps: int = 300
    eval_every: int = 100
    eval_max: Optional[int] = 4000
    eval_train: bool = True
    ks: tuple = (1, 2, 4, 8)
    checkpoint_every: int = 0

    def replace(self, **changes: Any) -> "TrainConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if "ks" in d:
            d["ks"] = tuple(d["ks"])
        return cls().replace(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        if name not in PRESETS:
            raise ValueError(f"preset = {name!r} is unknown; choose one of {', '.join(PRESETS)}")
        return cls().replace(**{**PRESETS[name], **overrides})


#: Settings that may change between steps (the dashboard's sliders).
LIVE_KEYS = frozenset(
    "c r gamma_e gamma_h lambda_e lambda_h delta_e delta_h eta_e eta_h tau gamma_hyp hyphc M t t_e t_h "
    "mix_lam pair_space lr lr_head lr_proxy weight_decay grad_clip eval_every eval_max steps".split()
)

#: One line per knob, with its paper symbol and value; printed by ``--help``.
HELP = {
    "dataset": "tree | shapes | digits (embedded) or cub200 | cars196 | sop | inshop | cifar100 (--data-root)",
    "backbone": "mlp | cnn | vit_tiny_patch16_224 | vit_small_patch16_224 (paper) | vit_base_patch16_224",
    "pretrained": "load ImageNet weights from the hub for timm backbones (falls back to random init offline)",
    "weights": "a local state-dict file for the backbone (instead of the hub)",
    "dim_e": "D_E, Euclidean embedding size (fixed by ViTs: 384 for ViT-S)",
    "dim_h": "D_H, hyperbolic embedding size (paper 384); 2 makes the Poincaré disk the embedding",
    "euclid_space": "auto | backbone | head: space of L_E; 'head' uses W x^E + b (Sec. 4.4 rule, auto when eta_h = 0)",
    "K": "K, proxies per class (paper 10 CUB/Cars, 2 SOP/In-shop); tau > 0 needs K >= 2",
    "batch_size": "batch size (paper: 200 CUB, 198 Cars, 100 In-shop, 75 SOP)",
    "m_per_class": "samples per class in a batch (m-per-class sampler)",
    "loss": "chest | pair_ce | mix: CHEST (Eq. 10), pairwise cross-entropy or Mix (hard-negative paper)",
    "c": "c, curvature of the Poincaré ball (Eq. 1-4), paper 0.5; 0 = Euclidean limit",
    "r": "r, feature-clipping radius before exp_0 (Hyp-ViT), paper 2.3",
    "gamma_e": "gamma_E, temperature of the soft similarity over K proxies (Eq. 5), paper 5",
    "gamma_h": "gamma_H, same in hyperbolic space (Eq. 6), paper 5",
    "lambda_e": "lambda_E, scale of the Euclidean proxy loss (Eq. 7), paper 20",
    "lambda_h": "lambda_H, scale of the hyperbolic proxy loss (Eq. 7), paper 20",
    "delta_e": "delta_E, Euclidean margin (Eq. 7), paper in {1, 5, 10, 20}",
    "delta_h": "delta_H, hyperbolic margin (Eq. 7), paper in {1, 5, 10, 20}",
    "eta_e": "eta_E, weight of L_E in Eq. 10 (paper 1)",
    "eta_h": "eta_H, weight of L_H in Eq. 10 (paper 1)",
    "tau": "tau, weight of the HypHC regulariser (Eq. 10), paper 0.5",
    "gamma_hyp": "gamma_hyp, temperature of the HypHC softmax (Eq. 9), paper 1",
    "hyphc": "lca (HypHC's reading of Eq. 9, default) | pairwise (the literal reading)",
    "M": "M, HypHC triplets per step (Table 1)",
    "pair_space": "sphere | hyperbolic: similarity of the pairwise cross-entropy",
    "t": "t, temperature of the pairwise cross-entropy",
    "t_e": "t_E, Euclidean (cosine) temperature of the Mix loss",
    "t_h": "t_H, hyperbolic temperature of the Mix loss",
    "mix_lam": "lambda of the Mix logits cos/t_E + lambda (-D_H)/t_H",
    "lr": "learning rate of the backbone (Table 1: 3e-5 CUB, 1e-5 others)",
    "lr_head": "learning rate of the hyperbolic head (default: lr)",
    "lr_proxy": "learning rate of the proxies (Table 1: 1e-2 CUB/Cars, 1e-1 SOP/In-shop)",
    "weight_decay": "AdamW weight decay (proxies get none)",
    "grad_clip": "max gradient norm (none to disable)",
    "steps": "optimizer steps (Table 1: 120 CUB, 1800 Cars, 30000 In-shop, 50000 SOP)",
    "eval_every": "evaluate Recall@k and MAP@R in both spaces every N steps (0 = only at the end)",
    "eval_max": "at most this many samples per evaluated split (none = all)",
    "seed": "seed of data, initialisation, batches and triplets",
    "device": "auto (CUDA when available) | cpu | cuda",
    "amp": "mixed precision on CUDA (geometry stays float32)",
    "threads": "CPU threads for torch (0 = all cores but one: spinning threads that compete with the UI or data workers slow small models down by 10x and more)",
    "workers": "DataLoader worker processes for image datasets read from disk",
    "checkpoint_every": "write an atomic checkpoint every N steps (0 = only at the end / on Ctrl-C)",
}

_VIT_S = dict(backbone="vit_small_patch16_224", pretrained=True, dim_e=None, dim_h=384, c=0.5, r=2.3,
              gamma_e=5.0, gamma_h=5.0, lambda_e=20.0, lambda_h=20.0, tau=0.5, eta_e=1.0, eta_h=1.0,
              m_per_class=2, workers=8, proxy_std=1.0, eval_max=None, eval_train=False, eval_every=0)

PRESETS: dict[str, dict] = {
    "demo-tree": dict(dataset="tree", backbone="mlp", dim_e=64, dim_h=16, K=2, M=32, batch_size=64,
                      m_per_class=4, lr=2e-3, lr_proxy=1e-2, steps=600, eval_every=100, delta_h=1.0, delta_e=1.0),
    "demo-shapes": dict(dataset="shapes", backbone="cnn", dim_e=64, dim_h=16, K=2, M=32, batch_size=64,
                        m_per_class=4, lr=2e-3, lr_proxy=1e-2, steps=800, eval_every=200, delta_h=1.0, delta_e=1.0),
    "demo-digits": dict(dataset="digits", backbone="cnn", dim_e=32, dim_h=8, K=2, M=16, batch_size=30,
                        m_per_class=6, lr=2e-3, lr_proxy=1e-2, steps=400, eval_every=100, delta_h=1.0, delta_e=1.0,
                        ks=(1, 2, 4, 8)),
    "cub200": dict(_VIT_S, dataset="cub200", batch_size=200, steps=120, lr=3e-5, lr_proxy=1e-2, K=10, M=100,
                   delta_h=20.0, delta_e=1.0, ks=(1, 2, 4, 8)),
    "cars196": dict(_VIT_S, dataset="cars196", batch_size=198, steps=1800, lr=1e-5, lr_proxy=1e-2, K=10, M=98,
                    delta_h=1.0, delta_e=5.0, ks=(1, 2, 4, 8)),
    "inshop": dict(_VIT_S, dataset="inshop", batch_size=100, steps=30000, lr=1e-5, lr_proxy=1e-1, K=2, M=3997,
                   delta_h=10.0, delta_e=5.0, ks=(1, 10, 20, 30, 40, 50)),
    "sop": dict(_VIT_S, dataset="sop", batch_size=75, steps=50000, lr=1e-5, lr_proxy=1e-1, K=2, M=11318,
                delta_h=1.0, delta_e=5.0, ks=(1, 10, 100, 1000)),
}


# ------------------------------------------------------------------------------------------------
# events
# ------------------------------------------------------------------------------------------------
@dataclass
class StepEvent:
    step: int
    loss: float
    components: dict  # {"l_h": .., "l_e": .., "l_hyphc": ..} (unweighted means)
    lrs: dict  # {"backbone": .., "head": .., "proxies": ..}
    step_time: float  # seconds, forward + backward + update
    grad_norm: float
    kind: str = "step"


@dataclass
class EvalEvent:
    step: int
    metrics: dict  # {"test/H/R@1": .., "test/E/MAP@R": .., "train/H/R@1": ..}
    eval_time: float
    kind: str = "eval"


@dataclass
class SimilarityEvent:
    """The batch's data-class similarities split by class (the paper's Fig. 3): for each sample the
    similarity to its own class (positive) and to every other class (negative)."""

    step: int
    h_pos: Optional[np.ndarray]
    h_neg: Optional[np.ndarray]
    e_pos: Optional[np.ndarray]
    e_neg: Optional[np.ndarray]
    kind: str = "similarity"


@dataclass
class CheckpointEvent:
    step: int
    path: str
    kind: str = "checkpoint"


Event = Union[StepEvent, EvalEvent, SimilarityEvent, CheckpointEvent]


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf; the model is left at its last good state."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device = {name!r} but CUDA is not available here; use device=cpu or auto")
    return torch.device(name)


class _StepBatchSampler(torch.utils.data.Sampler):
    """The trainer's per-step batches from ``start`` on, as a DataLoader batch sampler."""

    def __init__(self, trainer: "Trainer", start: int) -> None:
        self.trainer, self.start = trainer, start

    def __iter__(self):
        step = self.start
        while True:
            yield self.trainer._step_indices(step)
            step += 1


def _in_memory(ds: Any) -> bool:
    """An embedded dataset held as one tensor with no per-item transform: index ``ds.data`` directly."""
    return getattr(ds, "transform", "x") is None and hasattr(ds, "data")


def _euclid_space(cfg: TrainConfig) -> str:
    """Where L_E lives: ``cfg.euclid_space``, or for ``"auto"`` the Sec. 4.4 rule — ``W x^E + b``
    ("head") exactly while eta_H = 0 with the CHEST loss, ``x^E`` ("backbone") otherwise."""
    if cfg.euclid_space != "auto":
        return cfg.euclid_space
    return "head" if (cfg.eta_h == 0 and cfg.loss == "chest") else "backbone"


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class RunLogger:
    """``events.jsonl`` (every event) and one CSV per numeric event kind (``steps.csv``, ``eval.csv``)."""

    def __init__(self, out_dir: Path, resume_step: Optional[int] = None) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = out_dir / "events.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.jsonl.exists():
            self.jsonl.unlink()
            for f in out_dir.glob("*.csv"):
                f.unlink()

    def _truncate(self, step: int) -> None:
        """Drop records written after the checkpoint we resume from (they will be redone)."""
        if self.jsonl.exists():
            keep = [ln for ln in self.jsonl.read_text().splitlines() if json.loads(ln).get("step", 0) <= step]
            self.jsonl.write_text("".join(ln + "\n" for ln in keep))
        for f in self.out_dir.glob("*.csv"):
            with open(f, newline="") as fh:
                rows = list(csv.DictReader(fh))
            fields = list(rows[0].keys()) if rows else None
            rows = [r for r in rows if int(r["step"]) <= step]
            with open(f, "w", newline="") as fh:
                if fields:
                    w = csv.DictWriter(fh, fieldnames=fields)
                    w.writeheader()
                    w.writerows(rows)

    @staticmethod
    def flatten(event: Event) -> dict:
        row: dict = {"step": event.step}
        if isinstance(event, StepEvent):
            row.update(loss=event.loss, step_time=event.step_time, grad_norm=event.grad_norm)
            row.update(event.components)
            row.update({f"lr/{k}": v for k, v in event.lrs.items()})
        elif isinstance(event, EvalEvent):
            row.update(event.metrics)
            row["eval_time"] = event.eval_time
        return row

    def log(self, event: Event) -> None:
        if isinstance(event, SimilarityEvent):
            return
        rec = {"kind": event.kind, **(self.flatten(event) if not isinstance(event, CheckpointEvent) else {"step": event.step, "path": event.path})}
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if isinstance(event, (StepEvent, EvalEvent)):
            row = self.flatten(event)
            f = self.out_dir / ("steps.csv" if isinstance(event, StepEvent) else "eval.csv")
            new = not f.exists() or f.stat().st_size == 0
            with open(f, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)


class _System(nn.Module):
    """Model + loss in one module, so DistributedDataParallel all-reduces the proxies too."""

    def __init__(self, model: models.CHESTModel, criterion: Optional[losses.CHESTLoss]) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, x: Tensor, labels: Tensor, cfg: TrainConfig):
        x_e, x_h = self.model(x)
        if cfg.loss == "chest":
            return self.criterion(x_e, x_h, labels)
        c = self.model.head.c
        if cfg.loss == "pair_ce":
            if cfg.pair_space == "sphere":
                loss = losses.pair_ce_loss(x_e.float(), labels, cfg.t)
            else:
                loss = losses.pair_ce_loss(x_h.float(), labels, cfg.t, c=c)
        else:
            loss = losses.mix_loss(x_e.float(), x_h.float(), labels, cfg.t_e, cfg.t_h, cfg.mix_lam, c)
        zero = loss.new_zeros(())
        return losses.CHESTOutput(loss, zero, zero, zero, None, None)


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------
class Trainer:
    """Builds data, model, loss and optimizer from a :class:`TrainConfig` and trains step by step.

    ``out_dir`` (optional) receives ``config.json``, ``events.jsonl``, ``steps.csv``, ``eval.csv`` and
    ``checkpoint.pt`` (rank 0 only). ``resume=True`` continues from ``out_dir/checkpoint.pt``.
    """

    def __init__(self, config: TrainConfig, out_dir: Optional[Union[str, Path]] = None, resume: bool = False) -> None:
        self.config = cfg = config
        self._validate(cfg)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = resolve_device(cfg.device)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads if cfg.threads > 0 else max(1, (os.cpu_count() or 2) - 1))
        torch.manual_seed(cfg.seed)

        opts = dict(cfg.data_options)
        self.train_set = _data.load_dataset(cfg.dataset, "train", data_root=cfg.data_root, seed=cfg.seed, **opts)
        self.test_set = _data.load_dataset(cfg.dataset, "test", data_root=cfg.data_root, seed=cfg.seed, **opts)
        self._train_labels = self.train_set.labels
        self._info_splits = _data.dataset_info(cfg.dataset).splits
        self._extra_sets: dict = {}
        # one batch per "epoch" = per step: the batch of step s depends only on (seed, rank, s), so a
        # resumed run sees exactly the batches of an uninterrupted one
        self._batches = _data.MPerClassSampler(
            self._train_labels, cfg.m_per_class, cfg.batch_size, num_batches=1, seed=cfg.seed * 1_000_003 + self.rank
        )
        self._in_memory = _in_memory(self.train_set)
        input_shape = self._input_shape()

        euclid_space = _euclid_space(cfg)
        backbone = models.create_backbone(cfg.backbone, input_shape, cfg.dim_e, pretrained=cfg.pretrained, weights=cfg.weights)
        self.model = models.CHESTModel(backbone, cfg.dim_h, cfg.c, cfg.r, euclid_space=euclid_space)
        self.criterion: Optional[losses.CHESTLoss] = None
        if cfg.loss == "chest":
            self.criterion = losses.CHESTLoss(
                self.train_set.num_classes, cfg.K, backbone.out_dim, self.model.head, M=cfg.M,
                delta_e=cfg.delta_e, delta_h=cfg.delta_h, gamma_e=cfg.gamma_e, gamma_h=cfg.gamma_h,
                lambda_e=cfg.lambda_e, lambda_h=cfg.lambda_h, eta_e=cfg.eta_e, eta_h=cfg.eta_h, tau=cfg.tau,
                gamma_hyp=cfg.gamma_hyp, hyphc=cfg.hyphc, euclid_space=euclid_space, proxy_std=cfg.proxy_std,
                seed=cfg.seed,
            )
        self.system = _System(self.model, self.criterion).to(self.device)
        self._ddp = self.system
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = nn.parallel.DistributedDataParallel(self.system, device_ids=ids)

        groups = [
            {"name": "backbone", "params": list(self.model.backbone.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"name": "head", "params": list(self.model.head.parameters()), "lr": cfg.lr_head or cfg.lr, "weight_decay": cfg.weight_decay},
        ]
        if self.criterion is not None:
            groups.append({"name": "proxies", "params": [self.criterion.proxies], "lr": cfg.lr_proxy, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups)
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if (self.use_amp and torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

        self.step_count = 0
        self.last_output: Optional[losses.CHESTOutput] = None
        self._last_labels: Optional[Tensor] = None
        self.history: list[dict] = []
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._loader_iter = None
        self._loader_step = -1
        if resume:
            if self.out_dir is None or not (self.out_dir / "checkpoint.pt").exists():
                raise FileNotFoundError(f"--resume: no checkpoint.pt in {self.out_dir}; start without --resume")
            self.load_checkpoint(self.out_dir / "checkpoint.pt")
        self.logger = None
        if self.out_dir is not None and self.rank == 0:
            self.logger = RunLogger(self.out_dir, resume_step=self.step_count if resume else None)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    # -- construction helpers ---------------------------------------------------------------------
    @staticmethod
    def _validate(cfg: TrainConfig) -> None:
        if cfg.loss not in ("chest", "pair_ce", "mix"):
            raise ValueError(f"loss = {cfg.loss!r}: choose chest, pair_ce or mix")
        if cfg.pair_space not in ("sphere", "hyperbolic"):
            raise ValueError(f"pair_space = {cfg.pair_space!r}: choose sphere or hyperbolic")
        if cfg.loss == "chest" and cfg.tau > 0 and cfg.K < 2:
            raise ValueError(f"tau = {cfg.tau} > 0 needs K >= 2 proxies per class (got K = {cfg.K}); set tau = 0 or K >= 2")
        if cfg.dim_h < 1:
            raise ValueError(f"dim_h = {cfg.dim_h}: need D_H >= 1")
        if cfg.steps < 0:
            raise ValueError(f"steps = {cfg.steps}: need steps >= 0")
        poincare.check_curvature(cfg.c)

    def _input_shape(self) -> tuple[int, ...]:
        if hasattr(self.train_set, "sample_shape") and self._in_memory:
            return tuple(self.train_set.sample_shape)
        x, _ = self.train_set[0]
        return tuple(x.shape)

    # -- live settings ----------------------------------------------------------------------------
    def set(self, **changes: Any) -> None:
        """Change live settings (see :data:`LIVE_KEYS`); they apply from the next step on."""
        structural = sorted(set(changes) - LIVE_KEYS)
        if structural:
            raise ValueError(f"{structural} cannot change during training: build a new Trainer (structural settings)")
        new = self.config.replace(**changes)
        poincare.check_curvature(new.c)
        if "c" in changes:
            self.model.head.c = new.c
        if "r" in changes:
            self.model.head.r = new.r
        if self.criterion is not None:
            loss_keys = {k: v for k, v in changes.items() if k in losses.CHESTLoss.HPARAMS}
            if loss_keys:
                self.criterion.set(**loss_keys)
        if self.criterion is not None and "eta_h" in changes:
            # the Sec. 4.4 rule follows eta_H live
            self.model.euclid_space = self.criterion.euclid_space = _euclid_space(new)
        for g in self.optimizer.param_groups:
            if g["name"] == "backbone":
                g["lr"] = new.lr
            elif g["name"] == "head":
                g["lr"] = new.lr_head or new.lr
            elif g["name"] == "proxies":
                g["lr"] = new.lr_proxy
            if g["name"] != "proxies":
                g["weight_decay"] = new.weight_decay
        self.config = new

    # -- data ---------------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[Tensor, Tensor]:
        if self._in_memory:
            idx = torch.as_tensor(self._step_indices(step))
            x, y = self.train_set.data[idx], self._train_labels[idx]
        else:
            # images: decoded and augmented by DataLoader workers, prefetched in step order
            if self._loader_iter is None or self._loader_step != step:
                loader = torch.utils.data.DataLoader(
                    self.train_set, batch_sampler=_StepBatchSampler(self, step), num_workers=self.config.workers,
                    pin_memory=self.device.type == "cuda", persistent_workers=False,
                )
                self._loader_iter = iter(loader)
            x, y = next(self._loader_iter)
            self._loader_step = step + 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _step_indices(self, step: int) -> list[int]:
        self._batches.set_epoch(step)
        return next(iter(self._batches))

    # -- one step -------------------------------------------------------------------------------------
    def train_step(self) -> StepEvent:
        cfg = self.config
        t0 = time.perf_counter()
        x, y = self._batch(self.step_count)
        self.system.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp), poincare.checks(False):
            out = self._ddp(x, y, cfg)
        loss = out.loss
        if not torch.isfinite(loss):
            raise TrainingDiverged(self.step_count, self._diagnose(f"the loss became {float(loss.detach())}", out))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = cfg.grad_clip if cfg.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self.step_count, self._diagnose(f"the gradient norm became {float(grad_norm)}", out))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.step_count += 1
        self.last_output = out
        self._last_labels = y
        ev = StepEvent(
            step=self.step_count,
            loss=float(loss.detach()),
            components={k: float(getattr(out, k).detach()) for k in ("l_h", "l_e", "l_hyphc")},
            lrs={g["name"]: g["lr"] for g in self.optimizer.param_groups},
            step_time=time.perf_counter() - t0,
            grad_norm=float(grad_norm),
        )
        return ev

    def _diagnose(self, what: str, out: losses.CHESTOutput) -> str:
        cfg = self.config
        edge = 1 - math.tanh(math.sqrt(cfg.c) * cfg.r) if cfg.c > 0 and math.isfinite(cfg.r) else 0.0
        causes = []
        if cfg.c > 0 and (not math.isfinite(cfg.r) or edge < 1e-4):
            causes.append(
                f"with c = {cfg.c:g} and r = {cfg.r:g} embeddings reach {1 - edge:.7f} of the ball's radius, where "
                f"float32 cannot resolve distances: lower r (paper 2.3) or c"
            )
        if max(cfg.lr, cfg.lr_proxy) > 1e-1:
            causes.append(f"the learning rates (lr = {cfg.lr:g}, lr_proxy = {cfg.lr_proxy:g}) may be too large")
        if max(cfg.lambda_h, cfg.lambda_e) * max(cfg.delta_h, cfg.delta_e, 1) > 1e4:
            causes.append("lambda * delta is very large: the logits overflow")
        parts = {k: float(getattr(out, k).detach()) for k in ("l_h", "l_e", "l_hyphc")}
        hint = "; ".join(causes) or "lower the learning rates, c or r, or enable grad_clip"
        return (
            f"training diverged at step {self.step_count + 1}: {what} (L_H = {parts['l_h']:.4g}, L_E = {parts['l_e']:.4g}, "
            f"L_HypHC = {parts['l_hyphc']:.4g}). Likely cause: {hint}. The model was left at step {self.step_count}"
            + (" and the last checkpoint is kept." if self.out_dir else ".")
        )

    # -- evaluation -----------------------------------------------------------------------------------
    def _split(self, split: str):
        if split == "train":
            return self.train_set
        if split == "test":
            return self.test_set
        if split in ("query", "gallery"):
            if split not in self._extra_sets:
                self._extra_sets[split] = _data.load_dataset(
                    self.config.dataset, split, data_root=self.config.data_root, seed=self.config.seed, **self.config.data_options
                )
            return self._extra_sets[split]
        raise ValueError(f"split = {split!r}: choose train, test (or query / gallery for In-shop)")

    @torch.no_grad()
    def embed(self, split: str = "test", max_n: Optional[int] = None, batch_size: int = 256) -> dict:
        """Embeddings of a split: ``{"x_e": (N, D_E), "x_h": (N, D_H), "labels": (N,), "super": (N,),
        "index": (N,)}`` on the CPU; ``max_n`` takes a fixed random subset (same for every call)."""
        ds = self._split(split)
        n = len(ds)
        index = torch.arange(n)
        if max_n is not None and n > max_n:
            index = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed + 17))[:max_n].sort().values
        self.system.eval()
        if _in_memory(ds):
            batches = ((ds.data[index[i : i + batch_size]], None) for i in range(0, len(index), batch_size))
        else:  # images from disk: decode in worker processes
            batches = torch.utils.data.DataLoader(
                torch.utils.data.Subset(ds, index.tolist()), batch_size=batch_size, num_workers=self.config.workers,
                pin_memory=self.device.type == "cuda",
            )
        xe, xh = [], []
        for x, _ in batches:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                e, h = self.model(x.to(self.device, non_blocking=True))
            xe.append(e.float().cpu())
            xh.append(h.float().cpu())
        labels = ds.labels[index]
        sup = ds.super_labels[index] if hasattr(ds, "super_labels") else torch.zeros_like(labels)
        return {"x_e": torch.cat(xe), "x_h": torch.cat(xh), "labels": labels, "super": sup, "index": index}

    def evaluate(self, splits: Optional[tuple[str, ...]] = None) -> EvalEvent:
        """Recall@k and MAP@R in both spaces (E: x_e, Euclidean; H: x_h, Poincaré) on the given splits.
        For In-shop, ``test`` is evaluated the conventional way: queries retrieve from the gallery."""
        cfg = self.config
        t0 = time.perf_counter()
        splits = splits or (("test", "train") if cfg.eval_train else ("test",))
        out: dict = {}
        for split in splits:
            query_gallery = split == "test" and "query" in self._info_splits
            emb = self.embed("query" if query_gallery else split, cfg.eval_max)
            ref = self.embed("gallery", cfg.eval_max) if query_gallery else None
            n = len(ref["labels"]) + 1 if ref is not None else len(emb["labels"])
            ks = tuple(k for k in cfg.ks if k < n)
            for space, key, metric, c in (("H", "x_h", "poincare", self.model.head.c), ("E", "x_e", "euclidean", None)):
                extra = {"reference": ref[key], "reference_labels": ref["labels"]} if ref is not None else {}
                res = metrics.retrieval_metrics(emb[key], emb["labels"], ks, metric, c, **extra)
                out.update({f"{split}/{space}/{k}": v for k, v in res.items()})
        ev = EvalEvent(self.step_count, out, time.perf_counter() - t0)
        self.history.append({"step": self.step_count, **out})
        return ev

    def similarities(self) -> SimilarityEvent:
        """The last batch's S_H / S_E to its own class (positive) and the other classes (negative)."""
        out, y = self.last_output, self._last_labels
        if out is None or y is None:
            raise RuntimeError("no step has run yet: call train_step() first")

        def split(S: Optional[Tensor]):
            if S is None:
                return None, None
            S = S.detach().float().cpu()
            yy = y.cpu()
            pos = S.gather(1, yy[:, None]).squeeze(1)
            mask = torch.ones_like(S, dtype=torch.bool)
            mask[torch.arange(len(yy)), yy] = False
            return pos.numpy(), S[mask].numpy()

        h_pos, h_neg = split(out.s_h)
        e_pos, e_neg = split(out.s_e)
        return SimilarityEvent(self.step_count, h_pos, h_neg, e_pos, e_neg)

    @torch.no_grad()
    def proxies(self) -> Optional[dict]:
        """Current proxies: ``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU, or None without proxies."""
        if self.criterion is None:
            return None
        return {"h": self.criterion.proxies_h().float().cpu(), "e": self.criterion.proxies.detach().float().cpu()}

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, steps: Optional[int] = None, *, similarity_every: int = 0, eval_at_end: bool = True) -> Iterator[Event]:
        """Train ``steps`` more steps (default: up to ``config.steps``), yielding a :class:`StepEvent`
        per step, an :class:`EvalEvent` every ``eval_every`` steps and (``eval_at_end``) at the end, a
        :class:`SimilarityEvent` every ``similarity_every`` steps, and :class:`CheckpointEvent` s.
        The dashboard runs short chunks with ``eval_at_end=False`` so only the schedule evaluates."""
        cfg = self.config
        end = self.step_count + steps if steps is not None else cfg.steps
        while self.step_count < end:
            ev = self.train_step()
            yield self._emit(ev)
            s = self.step_count
            if similarity_every and s % similarity_every == 0 and self.criterion is not None:
                yield self.similarities()
            if (self.config.eval_every and s % self.config.eval_every == 0) or (eval_at_end and s == end):
                yield self._emit(self.evaluate())
            if self.out_dir is not None and ((cfg.checkpoint_every and s % cfg.checkpoint_every == 0) or s == end):
                yield self._emit(self.save_checkpoint())

    def _emit(self, ev: Event) -> Event:
        if self.logger is not None:
            self.logger.log(ev)
        return ev

    # -- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "config": self.config.to_dict(),
            "system": self.system.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "version": 1,
        }

    def save_checkpoint(self, path: Optional[Union[str, Path]] = None) -> CheckpointEvent:
        """Write ``checkpoint.pt`` atomically (temp file + rename); rank 0 only."""
        path = Path(path) if path is not None else (self.out_dir / "checkpoint.pt" if self.out_dir else None)
        if path is None:
            raise ValueError("no path: give save_checkpoint(path) or build the Trainer with out_dir")
        if self.rank == 0:
            _atomic_save(self.state_dict(), path)
        return CheckpointEvent(self.step_count, str(path))

    def load_checkpoint(self, path: Union[str, Path]) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.system.load_state_dict(state["system"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.step_count = int(state["step"])
        self.history = list(state.get("history", []))
        live = {k: v for k, v in state["config"].items() if k in LIVE_KEYS and k != "steps"}
        self.set(**live)

    @classmethod
    def from_run(cls, run_dir: Union[str, Path], **overrides: Any) -> "Trainer":
        """Rebuild a trainer from a run folder (``config.json`` + ``checkpoint.pt``)."""
        run_dir = Path(run_dir)
        cfg_file = run_dir / "config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"{cfg_file} not found: is {run_dir} a chestlab run folder (made by --out)?")
        cfg = TrainConfig.from_dict(json.loads(cfg_file.read_text())).replace(**overrides)
        tr = cls(cfg)
        tr.out_dir = run_dir
        ckpt = run_dir / "checkpoint.pt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt} not found: the run has not saved a checkpoint yet")
        tr.load_checkpoint(ckpt)
        return tr


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def _parse_value(key: str, text: str) -> Any:
    default = getattr(TrainConfig(), key)
    if text.lower() in ("none", "null"):
        return None
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}={text}: expected true/false")
    if isinstance(default, int) and not isinstance(default, bool):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        return tuple(int(t) for t in text.split(","))
    if isinstance(default, dict):
        return json.loads(text)
    if default is None and key in ("dim_e", "lr_head", "eval_max", "grad_clip"):
        return float(text) if key in ("lr_head", "grad_clip") else int(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    knobs = "\n".join(f"  {k:<17} {v}" for k, v in HELP.items())
    presets = "\n".join(
        f"  {name:<12} {p.get('dataset')}, {p.get('backbone')}, {p.get('steps')} steps" for name, p in PRESETS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m chestlab.train",
        description="Train a CHEST model (or the pairwise-CE / Mix baselines) and log every step.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets:\n{presets}\n\nsettings for --set key=value (paper symbol, paper value):\n{knobs}\n\n"
        "examples:\n  python -m chestlab.train --preset demo-tree --out runs/tree\n"
        "  python -m chestlab.train --preset cars196 --data-root /data --set delta_h=1 --set delta_e=5\n"
        "  python -m chestlab.evaluate runs/tree",
    )
    parser.add_argument("--preset", default="demo-tree", choices=sorted(PRESETS), help="starting configuration (default demo-tree)")
    parser.add_argument("--data-root", help="folder holding the benchmark (CUB_200_2011/, cars_annos.mat, Ebay_*.txt, ...)")
    parser.add_argument("--steps", type=int, help="optimizer steps (overrides the preset)")
    parser.add_argument("--out", help="run folder for config.json, events.jsonl, steps.csv, eval.csv, checkpoint.pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting listed below")
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--weights", help="local backbone weights file (instead of the hub)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides: dict = {}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set delta_h=5")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in HELP and key not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise SystemExit(f"--set {key}: unknown setting; see --help for the list")
        overrides[key] = _parse_value(key, value.strip())
    for name in ("data_root", "steps", "device", "weights"):
        v = getattr(args, name)
        if v is not None:
            overrides[name] = v
    return TrainConfig.preset(args.preset, **overrides)


def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return True
    return False


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    started = _init_distributed()
    try:
        trainer = Trainer(cfg, out_dir=args.out, resume=args.resume)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rank0 = trainer.rank == 0

    def on_term(signum, frame):  # treat SIGTERM like Ctrl-C: save, then exit cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bar = None
    if rank0 and not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc=cfg.dataset, unit="step", dynamic_ncols=True)
    code = 0
    try:
        for ev in trainer.run():
            if bar is None:
                continue
            if isinstance(ev, StepEvent):
                bar.update(1)
                bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
            elif isinstance(ev, EvalEvent):
                shown = {k.replace("test/", ""): f"{v:.3f}" for k, v in ev.metrics.items() if k.startswith("test/") and ("R@1" in k or "MAP" in k)}
                bar.write(f"step {ev.step}: " + "  ".join(f"{k} {v}" for k, v in shown.items()))
    except KeyboardInterrupt:
        if trainer.out_dir is not None:
            trainer.save_checkpoint()
            if rank0:
                print(f"\ninterrupted at step {trainer.step_count}; checkpoint saved in {trainer.out_dir}. "
                      f"Continue with --resume.", file=sys.stderr)
        code = 130
    except TrainingDiverged as err:
        print(f"\nerror: {err}", file=sys.stderr)
        code = 3
    finally:
        if bar is not None:
            bar.close()
        if started:
            dist.destroy_process_group()
    if code == 0 and rank0 and trainer.history:
        last = trainer.history[-1]
        print(" ".join(f"{k}={v:.4f}" for k, v in last.items() if k != "step"))
    return code


if __name__ == "__main__":
    sys.exit(main())
