r"""Closed-form gradients of the kit's losses, as the notebooks derive them.

Each function returns the gradient that autograd would give for the matching function in
:mod:`chestlab.losses` / :mod:`chestlab.poincare` (``tests/test_gradients.py`` checks that), but
written out as a formula so it can be read, plotted and reasoned about. They are the notebooks'
reference, not a training path: the trainer's backward of Eq. 5–7 is the fused one of
:mod:`chestlab.losses.parts` (``_softmin_grad``, ``_margin_ce_grad``: the same formulas, written for
speed), and its input checks are those of :mod:`chestlab.losses.checks`.

* :func:`soft_similarity_grad` — :math:`\partial S/\partial d_k` of the soft similarity (Eq. 5/6);
* :func:`proxy_loss_grad` — :math:`\partial L_i/\partial S_{i,c}` of the margin loss (Eq. 7);
* :func:`dist_grad` — :math:`\partial D_c(x, y)/\partial x` of the Poincaré distance (Eq. 2);
* :func:`cosine_grad` — :math:`\partial \cos(x, y)/\partial x`;
* :func:`pair_ce_anchor_grad` — the gradient of the pairwise cross-entropy w.r.t. the anchor,
  assembled from the hard-negative weights of :func:`chestlab.losses.hard_negative_weights`;
* :func:`anchor_negative_weights` — those weights for one anchor of a set of features, sorted by
  distance (the hard-negative paper's Fig. 3, :mod:`chestlab.viz.hardneg`).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from . import poincare
from .losses.checks import check_positive
from .losses.functional import hard_negative_weights

__all__ = [
    "soft_similarity_grad",
    "proxy_loss_grad",
    "dist_grad",
    "cosine_grad",
    "pair_ce_anchor_grad",
    "anchor_negative_weights",
]


def soft_similarity_grad(d: Tensor, gamma: float) -> Tensor:
    r"""Gradient of the soft similarity :math:`S = -\sum_k p_k d_k`, :math:`p = \operatorname{softmax}(-d/\gamma)`
    (Eq. 5/6), with respect to the distances:

    .. math:: \frac{\partial S}{\partial d_k} = -p_k\Big(1 - \frac{d_k + S}{\gamma}\Big).

    :math:`d_k + S = d_k - \bar d` is the distance of proxy ``k`` above the soft mean: the nearest
    proxies get (almost) all of the pull, and a proxy farther than :math:`\bar d + \gamma` is even pushed.
    ``d``: (..., K) -> (..., K).
    """
    gamma = check_positive(gamma, "gamma")
    p = torch.softmax(-d / gamma, dim=-1)
    S = -(p * d).sum(-1, keepdim=True)
    return -p * (1 - (d + S) / gamma)


def proxy_loss_grad(S: Tensor, labels: Tensor, lam: float, delta: float) -> Tensor:
    r"""Gradient of the per-sample margin loss (Eq. 7) with respect to the soft similarities:

    .. math:: \frac{\partial L_i}{\partial S_{i,c}} = \lambda\big(\operatorname{softmax}(\ell_i)_c
              - \mathbb 1[c = c_i]\big), \qquad \ell_{i,c} = \lambda\,(S_{i,c} - \delta\,\mathbb 1[c = c_i]).

    Row ``i`` is the gradient of :math:`L_i` alone (so it is also the gradient of
    :math:`\sum_i L_i`). ``S``: (B, C), ``labels``: (B,) -> (B, C).
    """
    lam = check_positive(lam, "lambda")
    if S.dim() != 2:
        raise ValueError(f"S must be (B, C), got shape {tuple(S.shape)}")
    onehot = torch.nn.functional.one_hot(labels, S.shape[1]).to(S.dtype)
    logits = lam * (S - float(delta) * onehot)
    return lam * (torch.softmax(logits, dim=-1) - onehot)


def dist_grad(x: Tensor, y: Tensor, c: poincare.Curvature) -> Tensor:
    r"""Euclidean gradient of the Poincaré distance (Eq. 2) with respect to its first argument:

    .. math:: \frac{\partial D_c(x,y)}{\partial x}
              = \frac{2\,\big[(1 - 2c\langle x,y\rangle + c\|y\|^2)\,x - \alpha_x\,y\big]}
                     {\alpha_x\,\|x-y\|\,\sqrt{1 - 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}},
              \qquad \alpha_x = 1 - c\|x\|^2 .

    Derivation: :math:`D = \tfrac{2}{\sqrt c}\operatorname{asinh}(\sqrt c\,u)`,
    :math:`u^2 = \|x-y\|^2/(\alpha_x\alpha_y)`, so :math:`\partial D = 2\,\partial u/\sqrt{1 + cu^2}`
    with :math:`1 + cu^2 = \beta/(\alpha_x\alpha_y)`, :math:`\beta = \alpha_x\alpha_y + c\|x-y\|^2
    = 1 - 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2`, and :math:`\partial_x \alpha_x = -2cx`. For
    ``c = 1`` it is the gradient of Nickel & Kiela (2017) (their :math:`4/(\beta\sqrt{\gamma^2-1})` form).
    The bracket is evaluated as :math:`\alpha_x(x-y) + c\|x-y\|^2 x` (no cancellation as
    :math:`y \to x`). At ``c = 0`` it is the Euclidean :math:`2(x-y)/\|x-y\|`. The Riemannian gradient
    is this times :math:`(\alpha_x/2)^2`. At ``x = y`` the distance is not differentiable; like
    autograd on ``poincare.dist`` this returns 0 there.

    ``x``, ``y``: (..., D) in the ball, broadcast -> (..., D).
    """
    poincare.check_curvature(c)
    poincare.check_in_ball(x, c, "x")
    poincare.check_in_ball(y, c, "y")
    x, y = torch.broadcast_tensors(x, y)
    cc = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    diff = x - y
    sq = diff.pow(2).sum(-1, keepdim=True)
    ax = poincare.alpha(x, c).unsqueeze(-1)  # 1 - c|x|^2, exact in float64 near the boundary
    ay = poincare.alpha(y, c).unsqueeze(-1)
    beta = ax * ay + cc * sq
    num = ax * diff + cc * sq * x
    den = ax * (sq * beta).sqrt()
    zero = sq == 0
    return torch.where(zero, torch.zeros_like(num), 2 * num / torch.where(zero, torch.ones_like(den), den))


def cosine_grad(x: Tensor, y: Tensor) -> Tensor:
    r"""Gradient of the cosine similarity with respect to its first argument:

    .. math:: \frac{\partial \cos(x, y)}{\partial x} = \frac{\hat y - \cos(x,y)\,\hat x}{\|x\|},
              \qquad \hat x = x/\|x\|.

    It is orthogonal to ``x`` (scaling ``x`` does not change the cosine) and shrinks like
    :math:`1/\|x\|`. ``x``, ``y``: (..., D) non-zero, broadcast -> (..., D).
    """
    x, y = torch.broadcast_tensors(x, y)
    nx = x.norm(dim=-1, keepdim=True)
    xh, yh = x / nx, y / y.norm(dim=-1, keepdim=True)
    cos = (xh * yh).sum(-1, keepdim=True)
    return (yh - cos * xh) / nx


def _sim_grad(anchor: Tensor, others: Tensor, c: Optional[poincare.Curvature]) -> Tensor:
    """d s(anchor, others_k) / d anchor, (..., N, D): cosine or -D_H."""
    a = anchor.unsqueeze(-2).expand_as(others)
    return cosine_grad(a, others) if c is None else -dist_grad(a, others, c)


def pair_ce_anchor_grad(
    anchor: Tensor,
    others: Tensor,
    positive_index: Union[int, Tensor],
    t: float,
    c: Optional[poincare.Curvature] = None,
) -> Tensor:
    r"""Gradient of the pairwise cross-entropy with respect to the anchor :math:`z = z_i`,

    .. math:: L_i = -\log\frac{e^{s_{ij}/t}}{\sum_{k\ne i} e^{s_{ik}/t}}, \qquad
              \frac{\partial L_i}{\partial z} = \frac1t\sum_{k\ne i} w_{ik}
              \Big(\frac{\partial s_{ik}}{\partial z} - \frac{\partial s_{ij}}{\partial z}\Big),
              \quad w_{ik} = \frac{e^{s_{ik}/t}}{\sum_{l\ne i} e^{s_{il}/t}},

    with ``s = cos`` (``c=None``, :func:`cosine_grad`) or ``s = -D_H`` (``c >= 0``, :func:`dist_grad`).
    The weights are exactly ``chestlab.losses.hard_negative_weights(anchor, others, t, c)``.

    Which points are which: ``others`` (..., N, D) holds **every** candidate :math:`k \ne i` of the
    denominator — the positive included — and ``others[..., positive_index, :]`` is the positive
    :math:`z_j`. The gradient is taken with respect to the anchor only, the ``others`` held fixed
    (in ``pair_ce_loss`` every :math:`z_k` is also an anchor of its own term; those terms are not
    part of this gradient). Since :math:`\sum_k w_{ik} = 1`, the positive's own term is zero and
    the sum equals :math:`\frac1t(\sum_k w_{ik}\,\partial s_{ik} - \partial s_{ij})`.

    ``anchor``: (..., D); ``positive_index``: int, or LongTensor of shape (...) -> (..., D).
    """
    t = check_positive(t, "t")
    if others.dim() < 2 or others.shape[:-2] != anchor.shape[:-1] or others.shape[-1] != anchor.shape[-1]:
        raise ValueError(
            f"anchor (..., D) and others (..., N, D) must match, got {tuple(anchor.shape)} and {tuple(others.shape)}"
        )
    n = others.shape[-2]
    idx = torch.as_tensor(positive_index, dtype=torch.long, device=others.device)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"positive_index must lie in [0, N) = [0, {n}), got {positive_index}")
    idx = idx.expand(anchor.shape[:-1])
    w = hard_negative_weights(anchor, others, t, c)  # (..., N)
    ds = _sim_grad(anchor, others, c)  # (..., N, D)
    ds_pos = torch.take_along_dim(ds, idx[..., None, None].expand(*idx.shape, 1, ds.shape[-1]), dim=-2)
    return (w.unsqueeze(-1) * (ds - ds_pos)).sum(-2) / t


def anchor_negative_weights(v: Any, t: float, c: Optional[float], *, anchor: int = 0,
                            labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The weights ``w_ik`` of :func:`chestlab.losses.hard_negative_weights` for one anchor of the
    tangent features ``v`` (N, D): on the sphere (``c=None``: cosine of ``v``) or in the Poincaré ball
    of curvature ``c`` (points ``exp_0(v)``). Returns ``(distance, w)`` of the negatives (all others,
    or the other-label ones when ``labels`` are given) sorted by distance, nearest (hardest) first,
    as numpy arrays (float64)."""
    vv = torch.as_tensor(v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v), dtype=torch.float64)
    keep = torch.ones(len(vv), dtype=torch.bool)
    keep[anchor] = False
    if labels is not None:
        lab = torch.as_tensor(labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)).reshape(-1)
        keep &= lab != lab[anchor]
    if c is None:
        z = vv
        dist = 1.0 - torch.nn.functional.cosine_similarity(z[anchor][None], z[keep], dim=-1)
        w = hard_negative_weights(z[anchor], z[keep], t)
    else:
        z = poincare.expmap0(vv, float(c))
        dist = poincare.dist(z[anchor][None], z[keep], float(c))
        w = hard_negative_weights(z[anchor], z[keep], t, c=float(c))
    order = torch.argsort(dist)
    return dist[order].numpy(), w[order].numpy()
