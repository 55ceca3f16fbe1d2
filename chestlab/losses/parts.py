r"""The parts losses are composed from: the SoftTriple-style proxy loss with a pluggable distance
(Eq. 5–7) and the HypHC regulariser on the proxies (Eq. 8–9). CHEST (Eq. 10) is two proxy terms —
one with the Euclidean distance, one with the Poincaré distance — plus the regulariser, each with
its weight (:mod:`chestlab.losses.chest`); a new loss can reuse them.

These modules are the training path, so they are written for speed: :class:`ProxyTerm` evaluates
Eq. 5–7 in one ``torch.autograd.Function`` with a hand-derived backward (``_ProxyTermFn``), and the
distances come from ``poincare.pairwise_dist`` / ``poincare.pairwise_euclidean`` (one matmul each,
hand-derived backward). The readable definitions are in :mod:`chestlab.losses.functional`
(``soft_similarity``, ``proxy_loss``, ``hyphc_loss``); the tests hold the two equal, values and
gradients, and ``gradcheck`` the hand-derived backward passes in float64.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .. import poincare
from .functional import (check_real, check_values, clamp_to_dtype, check_labels, check_positive, hyphc_loss,
                         sample_triplets)

__all__ = ["Distance", "euclidean_distance", "PoincareDistance", "ProxyTerm", "HypHCTerm", "proxy_term"]

#: ``distance(x (B, D), y (P, D)) -> (B, P)``
Distance = Callable[[Tensor, Tensor], Tensor]


def euclidean_distance(x: Tensor, y: Tensor) -> Tensor:
    """D_E(x, y) = |x − y| (unsquared, as in Eq. 5): (B, D) x (P, D) -> (B, P); ``torch.cdist``'s
    values from one matmul with a hand-written backward (``poincare.pairwise_euclidean``)."""
    return poincare.pairwise_euclidean(x, y)


class PoincareDistance:
    """D_H (Eq. 2) in the ball whose curvature ``curvature()`` returns now (it may change live)."""

    def __init__(self, curvature: Callable[[], float]) -> None:
        self.curvature = curvature

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return poincare.pairwise_dist(x, y, self.curvature())


class _ProxyTermFn(torch.autograd.Function):
    r"""Eq. 5–7 fused: distances ``d`` (B, C, K) -> (mean over the batch of :math:`L(x_i)`, ``S`` (B, C)).

    Forward, as ``soft_similarity`` then ``proxy_loss``: :math:`w = \operatorname{softmax}_k(-d/\gamma)`,
    :math:`S = -\sum_k w_k d_k`, logits :math:`z = \lambda(S - \delta\,\mathbb 1_{y} - \max_c(\cdot))`,
    :math:`L_i = \operatorname{logsumexp}_c z_{ic} - z_{iy_i}`. Backward (``g`` the gradient of the mean):

    .. math:: \frac{\partial\bar L}{\partial S_{ic}} = \frac{g\lambda}{B}\,(\operatorname{softmax}(z_i)_c - \mathbb 1[c = y_i]),
              \qquad \frac{\partial S_{ic}}{\partial d_{ick}} = w_{ick}\Big(\frac{d_{ick} + S_{ic}}{\gamma} - 1\Big),

    in place on two (B, C, K) buffers instead of autograd's ~20 tensors. ``S`` is returned detached
    (for figures); the loss carries the gradient."""

    @staticmethod
    def forward(ctx, d: Tensor, labels: Tensor, gamma: float, lam: float, delta: float):
        B, K = d.shape[0], d.shape[-1]
        gamma, lam = clamp_to_dtype(gamma, d.dtype), clamp_to_dtype(lam, d.dtype)
        # sums over the K proxies as products with a vector of ones: a reduction over a last
        # dimension of 2 (SOP) is ~5x slower on the CPU
        one = d.new_ones(K)
        m = torch.minimum(d[..., :1], d[..., 1:]) if K == 2 else d.amin(-1, keepdim=True)
        w = torch.sub(m, d).div_(gamma).exp_()  # the shift by the row min cancels in the ratio
        den = w @ one
        S = torch.mul(w, d).matmul(one).neg_().div_(den)
        w.div_(den.unsqueeze(-1))
        rows = torch.arange(B, device=d.device)
        z = S.clone()
        z[rows, labels] -= delta
        z.sub_(z.amax(1, keepdim=True)).mul_(lam)  # <= 0: a huge lambda gives -inf, never inf - inf
        lse = torch.logsumexp(z, 1)
        loss = (lse - z[rows, labels]).mean()
        ctx.save_for_backward(d, w, S, z, lse, labels)
        ctx.consts = (gamma, lam)
        ctx.mark_non_differentiable(S)
        return loss, S

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, _gS):
        d, w, S, z, lse, labels = ctx.saved_tensors
        gamma, lam = ctx.consts
        B = d.shape[0]
        gz = torch.sub(z, lse[:, None]).exp_()  # softmax(z)
        gz[torch.arange(B, device=d.device), labels] -= 1
        gz.mul_(g * lam / B)  # dL/dS
        gd = torch.add(d, S.unsqueeze(-1)).div_(gamma).sub_(1).mul_(w).mul_(gz.unsqueeze(-1))
        return gd, None, None, None, None


def proxy_term(d: Tensor, labels: Tensor, gamma: float, lam: float, delta: float) -> tuple[Tensor, Tensor]:
    """``(proxy_loss(soft_similarity(d, gamma), labels, lam, delta).mean(), S)`` in one fused
    autograd Function (``S`` detached): same values, gradients, and input checks as the two
    functional calls. ``d``: (B, C, K) finite distances, ``B >= 1``, ``C >= 2``, ``K >= 1``."""
    gamma = check_positive(gamma, "gamma")
    lam = check_positive(lam, "lambda")
    delta = check_real(delta, "delta")
    check_values(d, "d", "distances (B, C, K)")
    if d.dim() != 3 or d.shape[-1] == 0:
        raise ValueError(f"d must be (B, C, K) distances with K >= 1 proxies per class, got shape {tuple(d.shape)}")
    check_labels(labels, d.shape[0], d.shape[1])
    if d.shape[0] == 0:
        raise ValueError("d holds B = 0 samples: a loss averaged over no samples is undefined (NaN); pass B >= 1")
    return _ProxyTermFn.apply(d, labels.long(), gamma, lam, delta)


class ProxyTerm(nn.Module):
    r"""The proxy loss of Eq. (5)–(7) under a given distance: the soft similarity
    :math:`S(x_i, p_c)` over each class's ``K`` proxies, then the margin cross-entropy, averaged
    over the batch. Returns ``(mean L(x_i), S)`` with ``S``: (B, C), detached (:func:`proxy_term`)."""

    def __init__(self, distance: Distance) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, x: Tensor, proxies: Tensor, labels: Tensor, *, gamma: float, lam: float,
                delta: float) -> tuple[Tensor, Tensor]:
        C, K, D = proxies.shape
        d = self.distance(x, proxies.reshape(C * K, D)).view(-1, C, K)
        return proxy_term(d, labels, gamma, lam, delta)


class HypHCTerm(nn.Module):
    r"""The HypHC regulariser of Eq. (8)–(9) on hyperbolic proxies (C, K, D_H): draws ``M`` triplets
    (anchor, same-class proxy, other-class proxy) from its own seeded generator at each call and
    returns the mean of :func:`~chestlab.losses.functional.hyphc_loss`."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, proxies_h: Tensor, c: float, *, M: int, gamma_hyp: float, variant: str) -> Tensor:
        C, K = proxies_h.shape[:2]
        triplets = sample_triplets(C, K, M, self.generator).to(proxies_h.device)
        return hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant=variant).mean()
