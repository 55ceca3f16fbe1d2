"""Live settings: the settings a run may change between two steps (:func:`chestlab.settings.live_keys`:
the curvature ``c`` and clip radius ``r``, the loss's margins and weights, the learning rates, the
evaluation schedule, ...) and what changing one does to the model, loss and optimizer already built.

:meth:`Trainer.set <chestlab.engine.trainer.Trainer.set>` is :func:`checked`, then :func:`apply`,
then the run folder records :func:`differences`. Structural settings (dataset, backbone, ``K``,
dimensions) shape tensors that exist; they need a new trainer and are refused here.
"""

from __future__ import annotations

from typing import Any

from torch import optim

from .. import models
from ..losses import Loss
from ..settings import TrainConfig, live_keys, section_values
from . import build

__all__ = ["Changes", "checked", "apply", "differences"]

#: Settings that changed: ``{key: (old, new)}``.
Changes = dict[str, tuple[Any, Any]]


def checked(config: TrainConfig, changes: dict[str, Any]) -> TrainConfig:
    """``config`` with ``changes``, validated as a whole (rules between settings included) before
    anything is applied: a ``ValueError`` leaves the run as it was."""
    structural = sorted(set(changes) - live_keys())
    if structural:
        raise ValueError(f"{structural} cannot change during training: build a new Trainer (structural settings)")
    new = config.replace(**changes)
    build.validate(new)
    return new


def apply(new: TrainConfig, changes: dict[str, Any], model: models.CHESTModel, criterion: Loss,
          optimizer: optim.Optimizer) -> None:
    """Make the built objects follow ``new`` (``changes`` names the keys that were given).

    The loss takes its own hyper-parameters (:meth:`Loss.hparams`); the head's ball follows ``c``
    and ``r`` (embeddings (B, D_H) land in the ball of radius ``tanh(sqrt(c) r) / sqrt(c)`` from the
    next forward on); the model settings the build resolves from others (an ``auto`` the loss
    decides, e.g. CHEST's Sec. 4.4 rule, which reads live settings) are resolved again
    (:func:`build.apply_resolved`); the optimizer's groups take their learning rates and weight decays."""
    # the loss's own settings by its field names (a plug-in's spring.t -> t; the core c is not its c)
    own = {k: v for k, v in section_values(changes, new.loss).items() if k in criterion.hparams()}
    if own:
        criterion.set(**own)
    if "c" in changes:
        model.head.c = new.c
    if "r" in changes:
        model.head.r = new.r
    build.apply_resolved(new, model, criterion)
    build.apply_optim_settings(optimizer, new, criterion)


def differences(old: TrainConfig, changes: dict[str, Any]) -> Changes:
    """The keys of ``changes`` whose value differs from ``old``'s: what a run folder records."""
    return {k: (getattr(old, k), v) for k, v in changes.items() if getattr(old, k) != v}
