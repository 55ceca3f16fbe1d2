r"""The parts losses are composed from: the SoftTriple-style proxy loss with a pluggable distance
(Eq. 5–7) and the HypHC regulariser on the proxies (Eq. 8–9). CHEST (Eq. 10) is two proxy terms —
one with the Euclidean distance, one with the Poincaré distance — plus the regulariser, each with
its weight (:mod:`chestlab.losses.chest`); a new loss can reuse them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .. import poincare
from .functional import hyphc_loss, proxy_loss, sample_triplets, soft_similarity

__all__ = ["Distance", "euclidean_distance", "PoincareDistance", "ProxyTerm", "HypHCTerm"]

#: ``distance(x (B, D), y (P, D)) -> (B, P)``
Distance = Callable[[Tensor, Tensor], Tensor]


def euclidean_distance(x: Tensor, y: Tensor) -> Tensor:
    """D_E(x, y) = |x − y| (unsquared, as in Eq. 5): (B, D) x (P, D) -> (B, P)."""
    return torch.cdist(x, y)


class PoincareDistance:
    """D_H (Eq. 2) in the ball whose curvature ``curvature()`` returns now (it may change live)."""

    def __init__(self, curvature: Callable[[], float]) -> None:
        self.curvature = curvature

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return poincare.pairwise_dist(x, y, self.curvature())


class ProxyTerm(nn.Module):
    r"""The proxy loss of Eq. (5)–(7) under a given distance: the soft similarity
    :math:`S(x_i, p_c)` over each class's ``K`` proxies, then the margin cross-entropy, averaged
    over the batch. Returns ``(mean L(x_i), S)`` with ``S``: (B, C)."""

    def __init__(self, distance: Distance) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, x: Tensor, proxies: Tensor, labels: Tensor, *, gamma: float, lam: float,
                delta: float) -> tuple[Tensor, Tensor]:
        C, K, D = proxies.shape
        d = self.distance(x, proxies.reshape(C * K, D)).view(-1, C, K)
        S = soft_similarity(d, gamma)
        return proxy_loss(S, labels, lam, delta).mean(), S


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
