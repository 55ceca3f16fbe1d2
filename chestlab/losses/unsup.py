r"""Unsupervised hyperbolic metric learning with hierarchical similarity (Yan, Luo, Deng & Huang,
CVPR 2021): no labels; pseudo-labels at several levels from a hierarchical clustering of the current
embeddings, refreshed on a schedule, and a loss that ranks pairs by how many levels they share.

**Clustering** (the paper's Sec. 3.3). Average linkage on the Poincaré distance: the distance
of two sub-clusters is the mean :math:`d_H` over their pairs,

.. math:: d(\mathcal C_a, \mathcal C_b) = \frac{1}{|\mathcal C_a||\mathcal C_b|}
          \sum_{u \in \mathcal C_a}\sum_{v \in \mathcal C_b} d_H(u, v),

the closest two merge first (``scipy.cluster.hierarchy.linkage(method="average")`` on the condensed
:math:`d_H` matrix, float64).

**Levels.** The paper cuts the dendrogram at distance thresholds :math:`\theta_l \in \{5, 10, 15\}`.
:math:`d_H`'s scale depends on ``c`` and ``r`` (and changes as the model trains), so the kit cuts at
*numbers of clusters* instead: ``unsup_levels = (n_1, ..., n_L)``, coarse to fine, level ``l`` being the
cut of the dendrogram into at most :math:`n_l` clusters (``fcluster(criterion="maxclust")``). Cuts of
one average-linkage dendrogram are nested (it has no inversions), so the levels form a tree.

**Similarity degree** :math:`h_{ij}` = the number of levels at which ``i`` and ``j`` share a cluster
(0 … L). Nested levels make it the depth of their deepest shared cluster.

**The loss — the kit's choice.** The paper's text ends inside Sec. 3.3, before its loss. The kit uses a
multi-level triplet loss on :math:`d_H` whose margin grows with the difference of similarity degrees,
so a sample is nearer to samples it shares more levels with (the paper's Fig. 1: negatives get
different degrees):

.. math:: L_{unsup} = \frac{1}{|\mathcal T|}\sum_{(i,j,k) \in \mathcal T}
          \big[d_H(x^H_i, x^H_j) - d_H(x^H_i, x^H_k) + \delta_{unsup}\,(h_{ij} - h_{ik})\big]_+,
          \qquad \mathcal T = \{(i, j, k) : j \ne i,\ k \ne i,\ h_{ij} > h_{ik}\},

over every such triplet of the batch (:math:`O(B^3)` memory).

**Schedule and state.** :meth:`UnsupLoss.before_step` re-clusters at step 0 and every
``unsup_refresh`` steps, from ``trainer.embed("train")["x_h"]`` (the whole training set, the model in
eval mode). Average linkage costs :math:`O(n^2)` memory, so at most ``unsup_max_n`` samples (a fixed
random subset) are clustered and every other sample takes the pseudo-labels of its nearest clustered
sample. The pseudo-labels (``codes``, one row per training sample) travel with the checkpoint
(``get_extra_state``), so a resumed run continues exactly. The loss never reads
``labels``; it is ``supervised = False`` (the trainer draws uniformly random batches) and
``needs_index = True`` (``forward`` gets the batch's training-set indices to look up its codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import Tensor

from .. import poincare
from ..settings import BIG, MAX_STEPS, Problem, TrainConfig, setting, too_big
from .base import Loss, LossOutput, register_loss

__all__ = ["UnsupLoss", "UnsupSettings", "poincare_average_linkage", "cut_levels", "pseudo_labels",
           "similarity_degree", "hierarchical_triplet_loss"]


def poincare_average_linkage(x_h: Tensor, c: poincare.Curvature) -> np.ndarray:
    """Average-linkage dendrogram (scipy linkage matrix, (N-1, 4)) of ``x_h`` (N, D) points of the
    ball under the Poincaré distance (average linkage, Sec. 3.3 of the unsupervised paper), in float64."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    x = x_h.detach().double().cpu()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x_h must be (N, D) with N >= 2 points, got shape {tuple(x.shape)}")
    d = poincare.pairwise_dist(x, x, c)
    d = ((d + d.T) / 2).fill_diagonal_(0).numpy()
    return linkage(squareform(d, checks=False), method="average")


def cut_levels(Z: np.ndarray, levels: Iterable[int]) -> Tensor:
    """Cut a dendrogram at each number of clusters in ``levels`` (sorted coarse to fine) -> (N, L)
    LongTensor of cluster ids ``0..n_l-1`` per level (fewer ids when ties merge clusters)."""
    from scipy.cluster.hierarchy import fcluster

    cols = [fcluster(Z, t=int(n), criterion="maxclust") - 1 for n in sorted(levels)]
    return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)


def pseudo_labels(x_h: Tensor, c: poincare.Curvature, levels: Iterable[int]) -> Tensor:
    """The multi-level pseudo-labels of ``x_h`` (N, D): :func:`cut_levels` of
    :func:`poincare_average_linkage` -> (N, L), level 0 the coarsest."""
    return cut_levels(poincare_average_linkage(x_h, c), levels)


def similarity_degree(codes_a: Tensor, codes_b: Tensor) -> Tensor:
    r""":math:`h_{ab}` = the number of levels at which ``a`` and ``b`` share a cluster: (A, L) and
    (B, L) codes -> (A, B). Codes ``-1`` (not clustered) match nothing."""
    same = (codes_a[:, None, :] == codes_b[None, :, :]) & (codes_a[:, None, :] >= 0)
    return same.sum(-1)


def hierarchical_triplet_loss(x_h: Tensor, codes: Tensor, c: poincare.Curvature, margin: float) -> Tensor:
    r"""The kit's hierarchical-similarity loss on a batch (see the module docstring):
    the mean of :math:`[d_H(x_i,x_j) - d_H(x_i,x_k) + \delta_{unsup} (h_{ij} - h_{ik})]_+` over the
    triplets with :math:`j \ne i, k \ne i, h_{ij} > h_{ik}` among the samples with pseudo-labels.

    ``x_h``: (B, D) points of the ball; ``codes``: (B, L) pseudo-labels (``-1`` rows: not clustered)
    -> a scalar (0, still connected to ``x_h``, when there is no triplet)."""
    if x_h.dim() != 2 or codes.dim() != 2 or codes.shape[0] != x_h.shape[0]:
        raise ValueError(f"x_h (B, D) and codes (B, L) must have the same B, got {tuple(x_h.shape)} and {tuple(codes.shape)}")
    if not margin >= 0:
        raise ValueError(f"margin = {margin!r}: the margin per similarity level must be >= 0")
    codes = codes.to(x_h.device)
    B = x_h.shape[0]
    d = poincare.pairwise_dist(x_h, x_h, c)
    h = similarity_degree(codes, codes)
    known = (codes >= 0).all(1)
    gap = (h[:, :, None] - h[:, None, :]).to(d.dtype)  # [i, j, k] = h_ij - h_ik
    eye = torch.eye(B, dtype=torch.bool, device=x_h.device)
    valid = (gap > 0) & ~eye[:, :, None] & ~eye[:, None, :]
    valid &= known[:, None, None] & known[None, :, None] & known[None, None, :]
    if not bool(valid.any()):
        return d.sum() * 0
    loss = torch.relu(d[:, :, None] - d[:, None, :] + margin * gap)
    return loss[valid].mean()


@dataclass
class UnsupSettings:
    """The settings of the unsupervised hierarchical-similarity loss."""

    unsup_levels: tuple = setting((8, 32, 128), group="loss", low=2, high=20_000, symbol="n_l",
                                  paper="distance thresholds θ = 5, 10, 15 (Sec. 3.3)",
                                  help="clusters at each similarity level of the pseudo-label hierarchy, coarse to fine, e.g. 8,32,128")
    unsup_refresh: int = setting(50, group="loss", live=True, low=1, high=MAX_STEPS,
                                 help="steps between two refreshes of the pseudo-labels (and at step 0)",
                                 ui={"lo": 1, "hi": 500, "step": 1})
    unsup_margin: float = setting(0.2, group="loss", live=True, low=0, high=BIG, symbol="δ_unsup",
                                  help="margin per level of similarity-degree difference (kit's loss, in d_H)",
                                  ui={"lo": 0.0, "hi": 3.0, "step": 0.05})
    unsup_max_n: Optional[int] = setting(4000, group="loss", live=True, low=2, high=20_000, nullable=True,
                                         help="samples clustered at each refresh (a fixed random subset; the others take the "
                                              "pseudo-labels of their nearest clustered sample); none = all; at most 20 000: "
                                              "average linkage keeps n**2 / 2 distances, 1.6 GB at 20 000")


@register_loss("unsup")
class UnsupLoss(Loss):
    r"""Unsupervised hierarchical similarity: pseudo-labels from average-linkage clustering of
    :math:`x^H` (refreshed by :meth:`before_step`), and the kit's multi-level triplet loss on them
    (:func:`hierarchical_triplet_loss`). Uses no labels; part ``l_unsup``. ``codes`` (N_train, L)
    holds the pseudo-labels (``-1``: not clustered), ``refreshed_at`` the step they come from."""

    Settings = UnsupSettings
    parts = ("l_unsup",)
    supervised = False
    needs_index = True

    def __init__(self, settings: Any = None, ctx: Any = None) -> None:
        super().__init__(settings, ctx)
        self.codes: Optional[Tensor] = None
        self.refreshed_at = -1

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        if len(set(cfg.unsup_levels)) != len(cfg.unsup_levels):
            yield Problem(("unsup_levels",), f"unsup_levels = {','.join(map(str, cfg.unsup_levels))}: the numbers of "
                          "clusters must differ from level to level")
        msg = too_big(f"the batch's triplets (batch_size**3 = {cfg.batch_size}**3)", cfg.batch_size**3, "batch_size <= 1024")
        if msg:
            yield Problem(("batch_size",), msg)
        if cfg.unsup_max_n is not None and max(cfg.unsup_levels) > cfg.unsup_max_n:
            yield Problem(("unsup_levels", "unsup_max_n"), f"unsup_levels asks for {max(cfg.unsup_levels)} clusters of "
                          f"unsup_max_n = {cfg.unsup_max_n} samples; cluster more samples or ask for fewer clusters")

    def refresh(self, x_h: Tensor, index: Tensor, n_train: int, step: int = -1) -> Tensor:
        """Re-cluster from the embeddings ``x_h`` (n, D) of training samples ``index`` (n,) into
        ``codes`` (``n_train``, L). At most ``unsup_max_n`` of them are clustered (a fixed random
        subset); every other one takes the codes of its nearest clustered sample (d_H). Samples not
        in ``index`` get ``-1``. Returns the new codes."""
        s = self.settings
        x_h = x_h.detach().float().cpu()
        n = x_h.shape[0]
        if s.unsup_max_n is None or n <= s.unsup_max_n:
            sub = torch.arange(n)
        else:
            seed = self.ctx.seed if self.ctx is not None else 0
            sub = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 29))[: s.unsup_max_n].sort().values
        codes_sub = pseudo_labels(x_h[sub], self.c, s.unsup_levels)
        if len(sub) < n:
            nearest = torch.cat([poincare.pairwise_dist(x_h[a : a + 1024], x_h[sub], self.c).argmin(1)
                                 for a in range(0, n, 1024)])
            codes_all = codes_sub[nearest]
        else:
            codes_all = codes_sub
        codes = torch.full((int(n_train), len(s.unsup_levels)), -1, dtype=torch.long)
        codes[index.long().cpu()] = codes_all
        self.codes, self.refreshed_at = codes, int(step)
        return codes

    def before_step(self, step: int, trainer: Any) -> None:
        """At step 0, every ``unsup_refresh`` steps, and whenever there are no codes yet: cluster
        the embeddings of the whole training set, ``trainer.embed("train")``."""
        if self.codes is not None and step % self.settings.unsup_refresh != 0:
            return
        if self.codes is not None and self.refreshed_at == step:
            return  # already done for this step (a step retried after an interrupt)
        emb = trainer.embed("train")
        self.refresh(emb["x_h"], emb["index"], len(trainer.train_set), step)

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor, index: Optional[Tensor] = None) -> LossOutput:
        """``labels`` is ignored; ``index`` (B,) gives the batch's rows of ``codes``."""
        if index is None:
            raise ValueError("loss unsup needs index= (the batch's training-set indices) to look up its pseudo-labels")
        if self.codes is None:
            raise RuntimeError("loss unsup has no pseudo-labels yet: call before_step(step, trainer) or refresh(x_h, index, n_train)")
        with torch.autocast(device_type=x_h.device.type, enabled=False):
            codes = self.codes[index.long().cpu()]
            loss = hierarchical_triplet_loss(x_h.float(), codes, self.c, self.settings.unsup_margin)
        return LossOutput(loss, {"l_unsup": loss})

    def get_extra_state(self) -> dict:
        return {"codes": self.codes, "refreshed_at": self.refreshed_at}

    def set_extra_state(self, state: dict) -> None:
        self.codes = state["codes"]
        self.refreshed_at = int(state["refreshed_at"])
