r"""The parts losses are composed from: the SoftTriple-style proxy loss with a pluggable distance
(Eq. 5–7) and the HypHC regulariser on the proxies (Eq. 8–9). CHEST (Eq. 10) is two proxy terms —
one with the Euclidean distance, one with the Poincaré distance — plus the regulariser, each with
its weight (:mod:`chestlab.losses.chest`); a new loss can reuse them.

These modules are the training path, so they are written for speed: under the kit's two distances
:class:`ProxyTerm` evaluates the distances of the batch to the proxies (Eq. 2 or the Euclidean
one, from one matmul) and Eq. 5–7 in one ``torch.autograd.Function`` with a hand-derived backward
(``_PointsProxyFn``, :func:`points_proxy_term`); under any other distance, the distance matrix and
then Eq. 5–7 in one Function (``_ProxyTermFn``, :func:`proxy_term`). The readable definitions are
in :mod:`chestlab.losses.functional` (``soft_similarity``, ``proxy_loss``, ``hyphc_loss``); the
tests hold the two equal, values and gradients, and ``gradcheck`` the hand-derived backward passes
in float64.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .. import poincare
from .checks import check_batch, check_labels, check_positive, check_real, check_values
from .functional import clamp_to_dtype, hyphc_loss, sample_triplets

__all__ = ["Distance", "euclidean_distance", "PoincareDistance", "ProxyTerm", "HypHCTerm", "proxy_term",
           "points_proxy_term", "hyphc_term"]

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


def _softmin(L: Tensor, scale: float) -> tuple[Optional[Tensor], Optional[Tensor], Tensor]:
    r"""Eq. 5/6 on ``L`` (B, C, K) with :math:`d = \kappa L` and ``scale`` :math:`= \kappa/\gamma`:
    ``(e, den, S_L)``, :math:`e_k = \exp(-(d_k - \min_q d_q)/\gamma)` (B, C, K), :math:`den = \sum_k e_k`
    (B, C), :math:`S_L = -\sum_k e_k L_k / den` (B, C), so that :math:`S = \kappa S_L`; ``e`` and
    ``den`` are ``None`` for ``K = 1`` (:math:`S_L = -L`). Five passes over ``L``."""
    K = L.shape[-1]
    if K == 1:
        return None, None, L[..., 0].neg()
    # sums over the K proxies as products with a vector of ones: a reduction over a last
    # dimension of 2 (SOP) is ~5x slower on the CPU
    one = L.new_ones(K)
    m = torch.minimum(L[..., :1], L[..., 1:]) if K == 2 else L.amin(-1, keepdim=True)
    # the shift by the row min cancels in the ratio; (min - L) first, exact where the two are close
    # (scale * min - scale * L, one pass less, is off by ulp(scale * min): exp(±huge) for huge distances)
    e = torch.sub(m, L).mul_(scale).exp_()
    den = e @ one
    S_L = torch.mul(e, L).matmul(one).div_(den).neg_()
    return e, den, S_L


def _softmin_grad(gS: Tensor, L: Tensor, e: Optional[Tensor], den: Optional[Tensor], S_L: Tensor,
                  kappa: float, gamma: float) -> Tensor:
    r"""The gradient (B, C, K) of the loss w.r.t. the distances :math:`d = \kappa L` from ``gS`` =
    dloss/dS (B, C), for :math:`S = -\sum_k p_k d_k`, :math:`p = \operatorname{softmax}_k(-d/\gamma) = e/den`:

    .. math:: \frac{\partial S}{\partial d_k} = p_k\Big(\frac{d_k + S}{\gamma} - 1\Big)
              = \frac{\kappa}{\gamma}\,p_k\,\big(L_k + S_L - \gamma/\kappa\big),

    as ``addcmul`` and one product: two passes over (B, C, K). (In units of ``d``, not of ``L``: with a
    huge :math:`\kappa`, the scale of ``pairwise_euclidean`` for huge inputs, the gradient w.r.t. ``L``
    could overflow.) That form rounds :math:`L_k` and :math:`S_L` separately before they cancel, an
    error of ~ulp(|S_L|) :math:`\kappa/\gamma` relative to the result: where that ratio is large (a tiny
    ``gamma``), :math:`L_k + S_L` is formed first (two more passes)."""
    if e is None:
        return gS.neg().unsqueeze(-1)
    coef = gS.mul(kappa / gamma).div_(den)
    if float(S_L.abs().amax()) * kappa / gamma <= 16:  # the cancellation costs < 16 ulp of the result
        return torch.addcmul((coef * (S_L - gamma / kappa)).unsqueeze(-1), coef.unsqueeze(-1), L).mul_(e)
    return torch.add(L, S_L.unsqueeze(-1)).sub_(gamma / kappa).mul_(e).mul_(coef.unsqueeze(-1))


def _margin_ce(S: Tensor, labels: Tensor, lam: float, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""Eq. 7 averaged over the batch: ``(loss, z, lse)``, logits
    :math:`z = \lambda(S - \delta\,\mathbb 1_{y} - \max_c(\cdot)) \le 0` (B, C) and their logsumexp (B,)."""
    rows = torch.arange(S.shape[0], device=S.device)
    z = S.clone()
    z[rows, labels] -= delta
    z.sub_(z.amax(1, keepdim=True)).mul_(lam)  # <= 0: a huge lambda gives -inf, never inf - inf
    lse = torch.logsumexp(z, 1)
    return (lse - z[rows, labels]).mean(), z, lse


def _margin_ce_grad(g: Tensor, z: Tensor, lse: Tensor, labels: Tensor, lam: float) -> Tensor:
    r""":math:`\partial\bar L/\partial S_{ic} = \frac{g\lambda}{B}(\operatorname{softmax}(z_i)_c - \mathbb 1[c = y_i])` (B, C)."""
    B = z.shape[0]
    gz = torch.sub(z, lse[:, None]).exp_()  # softmax(z)
    gz[torch.arange(B, device=z.device), labels] -= 1
    return gz.mul_(g * lam / B)


class _ProxyTermFn(torch.autograd.Function):
    r"""Eq. 5–7 fused: distances ``d`` (B, C, K) -> (mean over the batch of :math:`L(x_i)`, ``S`` (B, C)).

    Forward, as ``soft_similarity`` then ``proxy_loss``: :math:`w = \operatorname{softmax}_k(-d/\gamma)`,
    :math:`S = -\sum_k w_k d_k` (``_softmin``), logits :math:`z = \lambda(S - \delta\,\mathbb 1_{y} - \max_c(\cdot))`,
    :math:`L_i = \operatorname{logsumexp}_c z_{ic} - z_{iy_i}` (``_margin_ce``). Backward (``g`` the gradient of the mean):

    .. math:: \frac{\partial\bar L}{\partial S_{ic}} = \frac{g\lambda}{B}\,(\operatorname{softmax}(z_i)_c - \mathbb 1[c = y_i]),
              \qquad \frac{\partial S_{ic}}{\partial d_{ick}} = w_{ick}\Big(\frac{d_{ick} + S_{ic}}{\gamma} - 1\Big),

    (``_margin_ce_grad``, ``_softmin_grad`` with :math:`\kappa = 1`) on a few (B, C, K) buffers
    instead of autograd's ~20 tensors. ``S`` is returned detached (for figures); the loss carries
    the gradient."""

    @staticmethod
    def forward(ctx, d: Tensor, labels: Tensor, gamma: float, lam: float, delta: float):
        gamma, lam = clamp_to_dtype(gamma, d.dtype), clamp_to_dtype(lam, d.dtype)
        e, den, S = _softmin(d, 1 / gamma)
        loss, z, lse = _margin_ce(S, labels, lam, delta)
        ctx.save_for_backward(d, e, den, S, z, lse, labels)
        ctx.consts = (gamma, lam)
        ctx.mark_non_differentiable(S)
        return loss, S

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, _gS):
        d, e, den, S, z, lse, labels = ctx.saved_tensors
        gamma, lam = ctx.consts
        gd = _softmin_grad(_margin_ce_grad(g, z, lse, labels, lam), d, e, den, S, 1.0, gamma)
        return gd, None, None, None, None


#: below this s = z^2 the log form of asinh(z) loses digits (relative error ~ 2 ulp / z): such
#: entries are recomputed accurately
_ASINH_LOG_MIN = 0.25


def _asinh_sqrt(s: Tensor) -> Tensor:
    r""":math:`\operatorname{asinh}\sqrt s` (fresh tensor) for ``s >= 0``: :math:`\log(\sqrt s + \sqrt{1 + s})`,
    three vectorised passes, exact 0 at ``s = 0``; its relative error, ~2 ulp / :math:`\sqrt s`, is
    kept to ~2 ulp by recomputing the entries with ``s < 0.25`` from ``poincare``'s accurate asinh
    (all of them by ``asinh_nonneg_`` when they are many; one reduction decides, in the common case
    that there are none)."""
    L = torch.add(s, 1).sqrt_().add_(torch.sqrt(s)).log_()
    if s.numel() and bool(s.amin() < _ASINH_LOG_MIN):
        small = s < _ASINH_LOG_MIN
        idx = small.nonzero(as_tuple=True)
        if idx[0].numel() * 8 > s.numel():
            return poincare.asinh_nonneg_(s.sqrt())
        L.index_put_(idx, poincare.asinh_nonneg_(s[idx].sqrt()))
    return L


class _PointsProxyFn(torch.autograd.Function):
    r"""Eq. 2 (or the Euclidean distance) and Eq. 5–7 in one Function: points ``x`` (B, D), proxies
    ``y`` (C K, D) -> (mean over the batch of :math:`L(x_i)`, ``S`` (B, C), detached), for a float
    ``c > 0`` (Poincaré) or ``c = None`` (Euclidean). Same values as ``pairwise_dist`` /
    ``pairwise_euclidean`` followed by :func:`proxy_term` (to rounding), with about half their passes
    over the (B, C K) matrix and none of their autograd boundary.

    Forward: ``sq`` :math:`= \|x_i - y_j\|^2` from one ``addmm`` (``poincare.sqdist_screened``), then
    :math:`d = \kappa L`. Euclidean: :math:`L = \sqrt{sq}`, :math:`\kappa = 1` (for inputs whose squares
    would overflow, ``sq`` of :math:`x/\kappa, y/\kappa` with :math:`\kappa` a power of two, as
    ``pairwise_euclidean``). Poincaré: with :math:`a_i = c/\alpha_{x_i}`, :math:`b_j = 1/\alpha_{y_j}`,

    .. math:: s = a_i b_j\,sq = c\,u^2, \qquad L = \operatorname{asinh}\sqrt s \ (\texttt{\_asinh\_sqrt}),
              \qquad \kappa = 2/\sqrt c,

    then ``_softmin`` and ``_margin_ce``. Backward: :math:`g_d` from ``_margin_ce_grad`` and
    ``_softmin_grad``; Poincaré: :math:`G = \partial/\partial s = \kappa g_d / (2\sqrt{s(1 + s)})` (0 where
    :math:`s = 0`, as the clamp of ``pairwise_dist``) and

    .. math:: g_{\|x_i\|^2} = a_i\textstyle\sum_j G_{ij}(b_j + s_{ij}), \quad
              g_{\|y_j\|^2} = \sum_i G_{ij}(a_i b_j + c\,b_j s_{ij}), \quad
              \nabla_{x_i} = 2x_i\,g_{\|x_i\|^2} - 2a_i\textstyle\sum_j G_{ij} b_j\,y_j, \quad
              \nabla_{y_j} = 2y_j\,g_{\|y_j\|^2} - 2\sum_i G_{ij} b_j\,a_i x_i;

    Euclidean: :math:`G = g_d/(2L)` (0 where :math:`L = 0`), :math:`a = b = 1`, no :math:`s` terms. The
    tests hold it to the two-step route and ``gradcheck`` it in float64."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, labels: Tensor, K: int, c: Optional[float], gamma: float, lam: float,
                delta: float):
        B, C = x.shape[0], y.shape[0] // K
        gamma, lam = clamp_to_dtype(gamma, x.dtype), clamp_to_dtype(lam, x.dtype)
        sq, x2, y2, far = poincare.sqdist_screened(x, y)
        if c is None:
            s, a, b = None, None, None
            kappa = poincare.overflow_scale(x, y, x2, y2)
            if kappa != 1.0:  # squared norms near overflow: distances in units of kappa (a power of two, exact)
                x, y = x / kappa, y / kappa
                sq, x2, y2, far = poincare.sqdist_screened(x, y)
            L = sq.sqrt_()
        else:
            kappa = 2 / math.sqrt(c)
            a = poincare.alpha_of(x, c, x2).reciprocal_().mul_(c)
            b = poincare.alpha_of(y, c, y2).reciprocal_()
            s = sq.mul_(a[:, None]).mul_(b[None, :])
            L = _asinh_sqrt(s)
        e, den, S_L = _softmin(L.view(B, C, K), kappa / gamma)
        if c is None and kappa != 1.0 and e is not None:
            # as pairwise_euclidean then proxy_term: the weighted sum of the distances themselves, which
            # overflows (and the loss reports it) where theirs did, for distances near the largest float
            S = torch.mul(e, L.view(B, C, K)).mul_(kappa).sum(-1).div_(den).neg_()
        else:
            S = S_L.mul(kappa)
        loss, z, lse = _margin_ce(S, labels, lam, delta)
        ctx.save_for_backward(x, y, L, s, a, b, e, den, S_L, z, lse, labels)
        ctx.consts = (K, c, kappa, gamma, lam, far)
        ctx.mark_non_differentiable(S)
        return loss, S

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, _gS):
        x, y, L, s, a, b, e, den, S_L, z, lse, labels = ctx.saved_tensors
        K, c, kappa, gamma, lam, far = ctx.consts
        B, N = L.shape
        gS = _margin_ce_grad(g, z, lse, labels, lam)
        # Poincaré: G = dloss/ds = kappa g_d / (2 sqrt(s (1 + s))). Euclidean: G = g_d / (2 L), in which
        # kappa cancels: d = |x - y| = kappa |x' - y'| with x' = x / kappa, y' = y / kappa (saved)
        half = 0.5 if c is None else 0.5 * kappa
        G = _softmin_grad(gS * half, L.view(B, N // K, K), e, den, S_L, kappa, gamma).expand(B, N // K, K).reshape(B, N)
        if K == 1:
            G = G.clone()  # (a fresh buffer: the steps below work in place)
        tiny = torch.finfo(L.dtype).tiny
        if c is None:
            if far:
                G.div_(L)
            else:  # coincident points: the zero gradient of pairwise_euclidean
                G.div_(L.clamp_min(tiny)).masked_fill_(L < tiny, 0)
            rx, ry = G.sum(1), G.sum(0)
            xs = x
        else:
            t = torch.addcmul(s, s, s)  # s (1 + s)
            if not far:
                t.clamp_min_(tiny)
            G.mul_(t.rsqrt_())
            if not far:
                G.masked_fill_(s < tiny, 0)
            Gs = torch.mul(G, s, out=t)
            gsx, gsy = Gs.sum(1), Gs.sum(0)
            del Gs, t
            G.mul_(b[None, :])  # G b
            rx = G.sum(1).add_(gsx).mul_(a)  # a_i sum_j G_ij (b_j + s_ij)
            ry = torch.mv(G.T, a).addcmul_(b, gsy, value=c)
            xs = x * a[:, None]
        gx = gy = None
        if ctx.needs_input_grad[0]:
            # 2 x (row sums) - 2 (G b) y a: the row scaling writes the fresh gradient, the matmul adds in place
            gx = torch.mm(G, y).mul_(-2 if a is None else (-2 * a)[:, None]).addcmul_(x, rx[:, None], value=2)
        if ctx.needs_input_grad[1]:
            gy = torch.mul(y, ry.mul_(2)[:, None]).addmm_(G.T, xs, alpha=-2)
        return gx, gy, None, None, None, None, None, None


def points_proxy_term(x: Tensor, proxies: Tensor, labels: Tensor, K: int, c: Optional[float], gamma: float,
                      lam: float, delta: float) -> tuple[Tensor, Tensor]:
    """``proxy_term(distance(x, proxies).view(B, C, K), labels, gamma, lam, delta)`` for the Poincaré
    distance of curvature ``c`` (``pairwise_dist``) or, with ``c = None``, the Euclidean one
    (``pairwise_euclidean``), in one fused autograd Function (``_PointsProxyFn``): same values,
    gradients and input checks. ``x``: (B, D) points (in the ball for the Poincaré distance), ``proxies``:
    (C K, D), the ``K`` proxies of each class consecutive; ``labels``: (B,) in [0, C). A ``c`` given as a
    tensor or below ``poincare.tiny_c`` (the series form of Eq. 2) takes the two-step route."""
    gamma = check_positive(gamma, "gamma")
    lam = check_positive(lam, "lambda")
    delta = check_real(delta, "delta")
    if c is None:
        d_fn = poincare.pairwise_euclidean
        poincare.check_pairwise(x, proxies, None)
    else:
        d_fn = lambda x, y: poincare.pairwise_dist(x, y, c)  # noqa: E731
        poincare.check_pairwise(x, proxies, c)
    N = proxies.shape[0]
    if not isinstance(K, int) or K < 1 or N % K:
        raise ValueError(f"proxies {tuple(proxies.shape)} must hold C K rows with K = {K!r} >= 1 proxies per class")
    if isinstance(c, Tensor) or (c is not None and not c >= poincare.tiny_c(x.dtype)):
        with poincare.checks(False):  # checked above
            return proxy_term(d_fn(x, proxies).view(-1, N // K, K), labels, gamma, lam, delta)
    check_labels(labels, x.shape[0], N // K)
    check_batch(x.shape[0], "x")
    return _PointsProxyFn.apply(x, proxies, labels.long(), K, None if c is None else float(c), gamma, lam, delta)


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
    check_batch(d.shape[0], "d")
    return _ProxyTermFn.apply(d, labels.long(), gamma, lam, delta)


def _flat_proxies(proxies: Tensor, K: Optional[int]) -> tuple[Tensor, int, int]:
    """``(proxies as (C K, D), C, K)`` from (C, K, D), or from (C K, D) with ``K`` given."""
    if K is None:
        if proxies.dim() != 3:
            raise ValueError(f"proxies must be (C, K, D), or (C K, D) with K given, got shape {tuple(proxies.shape)}")
        C, K, D = proxies.shape
        return proxies.reshape(C * K, D), C, K
    if proxies.dim() != 2 or K < 1 or proxies.shape[0] % K:
        raise ValueError(f"flat proxies must be (C K, D) with K = {K} proxies per class, got shape {tuple(proxies.shape)}")
    return proxies, proxies.shape[0] // K, K


class ProxyTerm(nn.Module):
    r"""The proxy loss of Eq. (5)–(7) under a given distance: the soft similarity
    :math:`S(x_i, p_c)` over each class's ``K`` proxies, then the margin cross-entropy, averaged
    over the batch. Returns ``(mean L(x_i), S)`` with ``S``: (B, C), detached (:func:`proxy_term`)."""

    def __init__(self, distance: Distance) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, x: Tensor, proxies: Tensor, labels: Tensor, *, gamma: float, lam: float,
                delta: float, K: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """``proxies``: (C, K, D), or (C K, D) with ``K`` given (no reshape: gradients that reach the
        proxies from several terms then add in place, instead of as views into a fresh tensor)."""
        flat, C, K = _flat_proxies(proxies, K)
        # the kit's two distances go through the fused Function; any other through proxy_term
        if self.distance is euclidean_distance:
            return points_proxy_term(x, flat, labels, K, None, gamma, lam, delta)
        if isinstance(self.distance, PoincareDistance):
            return points_proxy_term(x, flat, labels, K, self.distance.curvature(), gamma, lam, delta)
        d = self.distance(x, flat).view(-1, C, K)
        return proxy_term(d, labels, gamma, lam, delta)


class HypHCTerm(nn.Module):
    r"""The HypHC regulariser of Eq. (8)–(9) on hyperbolic proxies (C, K, D_H): draws ``M`` triplets
    (anchor, same-class proxy, other-class proxy) from its own seeded generator at each call and
    returns the mean of :func:`~chestlab.losses.functional.hyphc_loss` (through the fused
    :func:`hyphc_term`: same values and gradients)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, proxies_h: Tensor, c: float, *, M: int, gamma_hyp: float, variant: str,
                K: Optional[int] = None) -> Tensor:
        """``proxies_h``: (C, K, D_H), or (C K, D_H) with ``K`` given."""
        flat, C, K = _flat_proxies(proxies_h, K)
        triplets = sample_triplets(C, K, M, self.generator).to(proxies_h.device)
        return hyphc_term(flat, triplets, c, gamma_hyp, variant)


#: elements of the gathered (m, 3, D) triplet rows per chunk (as ``poincare.group_dist_lca``)
_HYPHC_CHUNK = 2**20


_PAIR_INDEX: dict = {}


def _pair_index(device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Index tensors of a triplet's pairs (0,1), (0,2), (1,2), cached per device: first points (3,),
    second points (3,), their entries in the flat 3x3 Gram matrix (3,), and the flat symmetric 3x3
    matrix from ``[diagonal (3), pairs (3)]`` (9,)."""
    key = str(device)
    if key not in _PAIR_INDEX:
        _PAIR_INDEX[key] = tuple(torch.tensor(v, device=device) for v in
                                 ([0, 0, 1], [1, 2, 2], [1, 2, 5], [0, 3, 4, 3, 1, 5, 4, 5, 2]))
    return _PAIR_INDEX[key]


def _gather_gram(x: Tensor, t: Tensor, chunk: int) -> Tensor:
    """``X_m X_m^T`` (M, 3, 3) of the triplets' rows ``X_m = x[t[m]]``, gathered in chunks of rows."""
    M = t.shape[0]
    G = x.new_empty(M, 3, 3)
    for s in range(0, M, chunk):
        g = t[s : s + chunk]
        X = x.index_select(0, g.reshape(-1)).view(g.shape[0], 3, -1)
        torch.bmm(X, X.transpose(1, 2), out=G[s : s + chunk])
    return G


class _HypHCFn(torch.autograd.Function):
    r"""The HypHC regulariser (Eq. 8–9) averaged over ``M`` triplets, from the triplets' Gram matrices,
    in one Function with a hand-derived backward (the similarities :math:`S = e^{-D_H}` detached, as
    ``hyphc_loss``'s default): the values of ``hyphc_loss(...).mean()`` to rounding, with ~40 small
    ops instead of autograd's ~280 on ``poincare.group_dist_lca``'s graph.

    For a pair :math:`(a, b)` of a triplet, with :math:`A = \|x_a\|^2`, :math:`B = \|x_b\|^2`,
    :math:`p = \langle x_a, x_b\rangle` (Gram entries), :math:`\alpha_a = 1 - cA`, :math:`\alpha_b = 1 - cB`:

    .. math:: sq = A + B - 2p, \quad w_2 = AB - p^2, \quad \beta = \alpha_a\alpha_b + c\,sq,
              \quad u_2 = sq / (\alpha_a\alpha_b), \quad s_2 = 4 w_2 / (sq\,\beta),

    :math:`D = \tfrac{2}{\sqrt c}\operatorname{asinh}\sqrt{c u_2}` (Eq. 2) and the LCA depth
    :math:`\operatorname{asinh}(\sqrt{c s_2})/\sqrt c` (``poincare.lca_depth``). With :math:`q` the depth
    (``lca``) or :math:`D` (``pairwise``), :math:`w = \operatorname{softmax}(q/\gamma)` over the three pairs,
    :math:`L = \sum S - \sum S w`. Backward (``g`` the gradient of the mean):

    .. math:: g_q = \frac{g}{M\gamma}\,w\,\big(\textstyle\sum S w - S\big), \qquad
              \frac{\partial\,depth}{\partial s_2} = \frac{1}{2\sqrt{s_2(1 + c s_2)}}, \qquad
              \frac{\partial D}{\partial u_2} = \frac{1}{\sqrt{u_2(1 + c u_2)}},

    :math:`\partial s_2 = s_2(\partial w_2/w_2 - \partial sq/sq - \partial\beta/\beta)`,
    :math:`\partial u_2 = u_2(\partial sq/sq - \partial\alpha_a/\alpha_a - \partial\alpha_b/\alpha_b)`, then to
    :math:`A, B, p` and the Gram matrix :math:`\bar G`, and :math:`\nabla X_m = (\bar G_m + \bar G_m^\top) X_m`
    added into the rows of the proxies (one ``index_add_``). ``parts`` are the forward's Gram quantities
    (:func:`_hyphc_gram_parts`), computed before, where the caller checks that no pair needs the exact
    recomputation of ``group_dist_lca`` (then the autograd route runs instead)."""

    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, parts: tuple, c: float, gamma: float, lca: bool, detach: bool, chunk: int):
        A, B, p, sq, w2, aa, ab = parts
        sc = math.sqrt(c)
        u2 = sq / (aa * ab)
        d = torch.mul(u2, c).sqrt_().asinh_().mul_(2 / sc)
        S = torch.neg(d).exp_()
        if lca:
            beta = torch.mul(sq, c).addcmul_(aa, ab)
            s2 = torch.mul(w2, 4).div_(sq * beta)
            q = torch.mul(s2, c).sqrt_().asinh_().div_(sc)
        else:
            beta = s2 = None
            q = d
        w = torch.softmax(q / gamma, dim=-1)
        Sw = (S * w).sum(-1)
        loss = (S.sum(-1) - Sw).mean()
        ctx.save_for_backward(x, t, A, B, p, sq, w2, aa, ab, u2, beta, s2, S, w, Sw)
        ctx.consts = (c, gamma, lca, detach, chunk)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        x, t, A, B, p, sq, w2, aa, ab, u2, beta, s2, S, w, Sw = ctx.saved_tensors
        c, gamma, lca, detach, chunk = ctx.consts
        M = t.shape[0]
        gq = torch.sub(Sw[:, None], S).mul_(w).mul_(g / (M * gamma))  # dL/dq (M, 3)
        gd = None  # dL/dD
        if not detach:  # dL/dS = 1 - w, dS/dD = -S
            gd = torch.sub(w, 1).mul_(S).mul_(g / M)
        gw2 = None
        if lca:
            # depth = asinh(sqrt(c s2)) / sqrt(c): d/ds2 = 1 / (2 sqrt(s2 (1 + c s2)))
            gs = gq.mul_(torch.mul(s2, c).add_(1).mul_(s2).rsqrt_().mul_(0.5 * s2))  # g_s2 * s2
            gw2 = gs / w2
            gb = gs / beta  # -dL/dbeta
            gsq = torch.div(gs, sq).add_(gb, alpha=c).neg_()
            gaa, gab = -gb * ab, -gb * aa
        else:
            gd = gq if gd is None else gd.add_(gq)
            gsq = gaa = gab = None
        if gd is not None:
            # D = 2 asinh(sqrt(c u2)) / sqrt(c): d/du2 = 1 / sqrt(u2 (1 + c u2))
            gu = gd.mul_(torch.mul(u2, c).add_(1).mul_(u2).rsqrt_().mul_(u2))  # g_u2 * u2
            if gsq is None:
                gsq, gaa, gab = gu / sq, -gu / aa, -gu / ab
            else:
                gsq.addcdiv_(gu, sq)
                gaa.sub_(gu / aa)
                gab.sub_(gu / ab)
        # to A = |x_a|^2, B = |x_b|^2, p = <x_a, x_b> (alpha = 1 - c |.|^2)
        gA = gsq.sub(gaa, alpha=c)
        gB = gsq.sub(gab, alpha=c)
        gp = gsq.mul(-2)
        if gw2 is not None:
            gA.addcmul_(gw2, B)
            gB.addcmul_(gw2, A)
            gp.addcmul_(gw2, p, value=-2)
        # (G + G^T) of the Gram gradient: the norms' gradients (twice) on the diagonal, p's off it
        ia, ib, _, sym = _pair_index(x.device)
        gd = gA.new_zeros(M, 3).index_add_(1, ia, gA).index_add_(1, ib, gB).mul_(2)
        Sym = torch.cat([gd, gp], 1).index_select(1, sym).view(M, 3, 3)
        gx = torch.zeros_like(x)
        for s in range(0, M, chunk):
            idx = t[s : s + chunk].reshape(-1)
            X = x.index_select(0, idx).view(-1, 3, x.shape[-1])
            gx.index_add_(0, idx, torch.bmm(Sym[s : s + chunk], X).view(-1, x.shape[-1]))
        return gx, None, None, None, None, None, None, None


def _hyphc_gram_parts(x: Tensor, t: Tensor, c: float, lca: bool, chunk: int) -> Optional[tuple]:
    """``(A, B, p, sq, w2, alpha_a, alpha_b)`` (M, 3) each, detached, for the pairs (0,1), (0,2), (1,2)
    of the triplets ``t``, or ``None`` where some pair needs ``group_dist_lca``'s exact recomputation
    (its cancellation test), coincides, or has a zero wedge (``lca``): the autograd route then."""
    with torch.no_grad():
        ia, ib, off, _ = _pair_index(x.device)
        G = _gather_gram(x, t, chunk).view(-1, 9)
        diag = G[:, 0::4]  # (M, 3): the squared norms
        A, B, p = diag.index_select(1, ia), diag.index_select(1, ib), G.index_select(1, off)
        if x.dtype == torch.float64:
            al = poincare.one_minus_c_sqnorm_exact(x, c)[t]  # as group_dist_lca: exact in float64
        else:
            al = torch.mul(diag, -c).add_(1)
        aa, ab = al.index_select(1, ia), al.index_select(1, ib)
        sq = A + B - 2 * p
        tol = 1e-4 if x.dtype == torch.float64 else 1e-2
        bad = sq < tol * (A + B)
        w2 = None
        if lca:
            w2 = A * B - p * p
            bad |= w2 < tol * A * B
            bad |= w2 <= 0
        bad |= sq <= torch.finfo(x.dtype).tiny
        if bool(bad.any()):
            return None
    return A, B, p, sq, w2, aa, ab


def hyphc_term(proxies_h: Tensor, triplets: Tensor, c: poincare.Curvature, gamma_hyp: float = 1.0,
               variant: str = "lca", detach_similarity: bool = True) -> Tensor:
    """``hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant, detach_similarity).mean()`` for
    ``proxies_h`` (P, D) and valid (M, 3) ``triplets`` (flat proxy indices, e.g. from
    ``sample_triplets``; not range-checked here): for a float ``c >= poincare.tiny_c`` and triplets
    whose pairs need no exact recomputation (the common case) one fused Function (``_HypHCFn``),
    otherwise ``hyphc_loss`` itself. Same values and gradients."""
    if (isinstance(c, Tensor) or variant not in ("lca", "pairwise") or not isinstance(detach_similarity, bool)
            or not isinstance(proxies_h, Tensor) or proxies_h.dim() != 2 or not proxies_h.dtype.is_floating_point
            or isinstance(gamma_hyp, bool) or not isinstance(gamma_hyp, (int, float))
            or not isinstance(triplets, Tensor) or triplets.dim() != 2 or triplets.shape[1] != 3 or not triplets.shape[0]
            or not isinstance(c, (int, float)) or not math.isfinite(c) or not c >= poincare.tiny_c(proxies_h.dtype)):
        return hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant=variant, detach_similarity=detach_similarity).mean()
    gamma_hyp = check_positive(gamma_hyp, "gamma_hyp")
    poincare.check_in_ball(proxies_h, c, "proxies_h")
    c = float(c)
    t = triplets.to(device=proxies_h.device, dtype=torch.long)
    lca = variant == "lca"
    chunk = t.shape[0] if proxies_h.device.type != "cpu" else max(1, _HYPHC_CHUNK // max(1, 3 * proxies_h.shape[1]))
    parts = _hyphc_gram_parts(proxies_h.detach(), t, c, lca, chunk)
    if parts is None:
        return hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant=variant, detach_similarity=detach_similarity).mean()
    return _HypHCFn.apply(proxies_h, t, parts, c, gamma_hyp, lca, detach_similarity, chunk)
