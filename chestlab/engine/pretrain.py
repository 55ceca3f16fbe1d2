"""Pretraining on other classes: the CPU stand-in for the ImageNet-pretrained networks the papers
start from (the unsupervised paper clusters the features of one; CHEST and HIER fine-tune one).

With ``pretrain_steps = N > 0`` the trainer first trains its freshly built network (backbone and
hyperbolic head) for ``N`` steps with a supervised proxy loss — CHEST's Eq. 5–7 in both spaces, one
proxy per class, no HypHC term — on classes the run never sees, then trains as usual from those
weights. On ``tree`` the other classes are those of another tree (data option ``tree_seed``) seen
through the same fixed map, with the same noise and nuisance: what a network learns there is how
to undo the map, which carries over; the classes themselves do not. Everything else (optimiser,
batch size, learning rates) is the run's own.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..settings import Problem, TrainConfig, register_rule

__all__ = ["PRETRAIN_DATASETS", "PRETRAIN_TREE_OFFSET", "pretrain_config", "pretrain"]

#: The datasets that provide other classes to pretrain on.
PRETRAIN_DATASETS: tuple[str, ...] = ("tree",)
#: The other tree: ``tree_seed = seed + PRETRAIN_TREE_OFFSET`` (never a seed's own tree).
PRETRAIN_TREE_OFFSET = 7919


@register_rule
def pretrain_rules(cfg: TrainConfig) -> Iterable[Problem]:
    """``pretrain_steps > 0`` needs a dataset with other classes (:data:`PRETRAIN_DATASETS`)."""
    if cfg.pretrain_steps and cfg.dataset not in PRETRAIN_DATASETS:
        yield Problem(("pretrain_steps", "dataset"), f"pretrain_steps = {cfg.pretrain_steps} needs other classes to pretrain on, "
                      f"which only {', '.join(PRETRAIN_DATASETS)} provides; set pretrain_steps = 0 (or pretrained = true "
                      "for a timm backbone)")


def pretrain_config(cfg: TrainConfig) -> TrainConfig:
    """The settings of the pretraining of a run ``cfg``: its data with other classes
    (``tree_seed = seed + PRETRAIN_TREE_OFFSET``), its model settings, optimiser and batches; the
    loss ``chest`` with ``K = 1``, ``tau = 0`` and both spaces; ``pretrain_steps`` steps, no
    evaluation. (A model setting whose ``auto`` the loss decides is resolved for this loss.)"""
    if cfg.dataset not in PRETRAIN_DATASETS:
        raise ValueError(f"pretrain_steps: dataset {cfg.dataset} has no other classes to pretrain on; "
                         f"use {', '.join(PRETRAIN_DATASETS)}")
    options = {**dict(cfg.data_options), "tree_seed": cfg.seed + PRETRAIN_TREE_OFFSET}
    return cfg.replace(loss="chest", K=1, tau=0.0, eta_h=1.0, eta_e=1.0, data_options=options,
                       steps=cfg.pretrain_steps, pretrain_steps=0, eval_every=0, checkpoint_every=0)


def pretrain(model: Any, cfg: TrainConfig, trainer: type) -> dict[str, float]:
    """Train ``model`` (a :class:`chestlab.models.CHESTModel` built for ``cfg``) in place for
    ``cfg.pretrain_steps`` steps on other classes (:func:`pretrain_config`); returns the last step's
    loss parts. The pretraining run is seeded by ``cfg.seed``, so the same settings give the same
    network. ``trainer`` is the :class:`~chestlab.engine.Trainer` class (passed in: the trainer
    calls this, so this module does not import it)."""
    pre = trainer(pretrain_config(cfg))
    pre.model.load_state_dict(model.state_dict())  # start from the run's own initialisation
    last: dict[str, float] = {}
    for ev in pre.run(eval_at_end=False):
        if ev.kind == "step":
            last = {"loss": ev.loss, **ev.components}
    model.load_state_dict(pre.model.state_dict())
    return last
