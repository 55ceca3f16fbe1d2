"""What a training step reports besides its loss: the class-similarity split of its batch (the
paper's Fig. 3, :func:`similarity_event`) and, when it diverges, a diagnosis that names the likely
cause (:func:`diagnose`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..losses import LossOutput, get_loss
from ..settings import TrainConfig
from .events import SimilarityEvent

__all__ = ["similarity_event", "diagnose", "loss_cause"]


def _split(S: Optional[Tensor], y: Tensor) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Similarities S (B, C) of B samples to C classes -> (the B to their own class y (B,), the
    B * (C - 1) to the other classes)."""
    if S is None:
        return None, None
    S = S.detach().float().cpu()
    yy = y.cpu()
    pos = S.gather(1, yy[:, None]).squeeze(1)
    mask = torch.ones_like(S, dtype=torch.bool)
    mask[torch.arange(len(yy)), yy] = False
    return pos.numpy(), S[mask].numpy()


def similarity_event(step: int, out: LossOutput, y: Tensor) -> Optional[SimilarityEvent]:
    """The batch's S_H / S_E (``out.extras["s_h"]``, ``["s_e"]``: (B, C)) split by labels ``y``
    (B,) into positives and negatives; None for a loss that computes no class similarities."""
    s_h, s_e = out.extras.get("s_h"), out.extras.get("s_e")
    if s_h is None and s_e is None:
        return None
    h_pos, h_neg = _split(s_h, y)
    e_pos, e_neg = _split(s_e, y)
    return SimilarityEvent(step, h_pos, h_neg, e_pos, e_neg)


def loss_cause(cfg: TrainConfig) -> Optional[str]:
    """A cause of divergence in the loss's own settings, or None: the loss's hook
    (:meth:`chestlab.losses.Loss.divergence_hint`; CHEST: lambda * delta too large)."""
    return get_loss(cfg.loss).divergence_hint(cfg)


def diagnose(cfg: TrainConfig, step: int, what: str, out: LossOutput, kept: bool) -> str:
    """The message of :class:`~chestlab.engine.events.TrainingDiverged` at ``step`` (the last good
    one): ``what`` went non-finite, the loss's parts, the likely causes under ``cfg`` (the geometry
    near float32's limit, large learning rates, :func:`loss_cause`), and whether a checkpoint is
    ``kept``."""
    edge = 1 - math.tanh(math.sqrt(cfg.c) * cfg.r) if cfg.c > 0 and math.isfinite(cfg.r) else 0.0
    causes = []
    if cfg.c > 0 and (not math.isfinite(cfg.r) or edge < 1e-4):
        causes.append(
            f"with c = {cfg.c:g} and r = {cfg.r:g} embeddings reach {1 - edge:.7f} of the ball's radius, where "
            f"float32 cannot resolve distances: lower r (paper 2.3) or c"
        )
    if max(cfg.lr, cfg.lr_proxy) > 1e-1:
        causes.append(f"the learning rates (lr = {cfg.lr:g}, lr_proxy = {cfg.lr_proxy:g}) may be too large")
    cause = loss_cause(cfg)
    if cause is not None:
        causes.append(cause)
    parts = ", ".join(f"{k} = {float(v.detach()):.4g}" for k, v in out.parts.items())
    hint = "; ".join(causes) or "lower the learning rates, c or r, or enable grad_clip"
    return (
        f"training diverged at step {step + 1}: {what} ({parts}). Likely cause: {hint}. "
        f"The model was left at step {step}" + (" and the last checkpoint is kept." if kept else ".")
    )
