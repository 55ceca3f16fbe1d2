r"""The functional core of the losses: CHEST and its parts (Eq. 5–10), and the losses of the
hard-negative paper.

Every function takes its tensors explicitly and returns per-sample values (or a scalar where the
paper averages), so tests and notebooks call them directly. Which of them the trainer runs:

- Eq. 5–7 and Eq. 10 (``soft_similarity``, ``proxy_loss``, ``chest_loss``) are the *readable
  reference*: the trainer computes them with the fused terms of :mod:`.parts` (one implementation
  per equation on the training path), and the tests hold the two equal, values and gradients;
- Eq. 8–9 (``hyphc_loss``, ``sample_triplets``) and the hard-negative paper's losses
  (``pair_ce_loss``, ``mix_loss``) have no second version: the terms call them.

The validators they share live in :mod:`.checks`.

Shapes: ``B`` batch, ``C`` classes, ``K`` proxies per class, ``D_E``/``D_H`` embedding dimensions,
``M`` HypHC triplets.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import poincare
from .checks import (check_batch, check_chest_inputs, check_count, check_hyphc, check_index_tensor, check_labels,
                     check_overflow, check_positive, check_real, check_values, hyphc_needs_two_proxies)

__all__ = [
    "soft_similarity",
    "proxy_loss",
    "hyphc_loss",
    "chest_loss",
    "CHESTOutput",
    "sample_triplets",
    "pair_similarity",
    "pair_ce_loss",
    "mix_loss",
    "hard_negative_weights",
]


def clamp_to_dtype(value: float, dtype: torch.dtype) -> float:
    """A positive scalar clamped to [tiny, max] of ``dtype``, so that dividing or multiplying by it
    in that precision neither gives 0/0 nor inf * 0 (the clamp only acts far beyond the values where
    the result has already reached its limit in that precision)."""
    fi = torch.finfo(dtype)
    return min(max(value, fi.tiny), fi.max)


# --------------------------------------------------------------------------------------------
# SoftTriple-style proxy loss (Eq. 5–7)
# --------------------------------------------------------------------------------------------
def soft_similarity(d: Tensor, gamma: float) -> Tensor:
    r"""Soft similarity of a sample to a class over its ``K`` proxies, Eq. (5)/(6):

    .. math:: S(x, y) = -\sum_q \operatorname{softmax}_q(-d_q/\gamma)\, d_q,
              \quad d_q = D(x, p_{y,q}).

    A soft minimum of the distances: ``gamma -> 0`` gives ``-min_q d_q``, large ``gamma`` the mean.
    ``d``: (..., K) finite distances, ``K >= 1`` -> (...). With ``K = 1`` it is ``-d``. The
    exponent is :math:`-(d_q - \min_{q'} d_{q'})/\gamma \le 0`, so a tiny ``gamma`` cannot overflow.
    """
    gamma = check_positive(gamma, "gamma")
    check_values(d, "d", "distances (..., K)")
    if d.dim() == 0 or d.shape[-1] == 0:
        raise ValueError(f"d must be (..., K) distances with K >= 1 proxies per class, got shape {tuple(d.shape)}")
    # softmax written out: torch's softmax over a last dimension of K ~ 10 is 4x slower (CPU,
    # forward + backward); the shift by the row min cancels in the ratio, so it may be constant
    e = ((d.detach().amin(-1, keepdim=True) - d) / clamp_to_dtype(gamma, d.dtype)).exp()
    return -(e * d).sum(-1) / e.sum(-1)


def proxy_loss(S: Tensor, labels: Tensor, lam: float, delta: float) -> Tensor:
    r"""Per-sample margin loss, Eq. (7): cross-entropy over classes of the logits
    :math:`\lambda (S_c - \delta\,\mathbb 1[c = c_i])`.

    ``S``: (B, C) finite soft similarities, ``B >= 1``, ``C >= 2``; ``labels``: (B,) integer class
    indices -> (B,) losses :math:`L(x_i)`. An empty batch (``B = 0``) raises ``ValueError``: the
    callers average these losses, and a mean over no samples is NaN.
    """
    lam = check_positive(lam, "lambda")
    delta = check_real(delta, "delta")
    check_values(S, "S", "similarities (B, C)")
    if S.dim() != 2:
        raise ValueError(f"S must be (B, C), got shape {tuple(S.shape)}")
    check_labels(labels, S.shape[0], S.shape[1])
    check_batch(S.shape[0], "S")
    labels = labels.long()
    z = S - delta * F.one_hot(labels, S.shape[1]).to(S.dtype)
    # cross-entropy is shift-invariant per row: with the row max subtracted first the logits are
    # <= 0, so a huge lambda gives -inf (the hard limit), never inf - inf
    z = z - z.detach().amax(1, keepdim=True)
    return F.cross_entropy(clamp_to_dtype(lam, S.dtype) * z, labels, reduction="none")


# --------------------------------------------------------------------------------------------
# HypHC regulariser on the proxies (Eq. 8–9)
# --------------------------------------------------------------------------------------------
def hyphc_loss(
    proxies_h: Tensor,
    triplets: Tensor,
    c: poincare.Curvature,
    gamma_hyp: float = 1.0,
    variant: str = "lca",
    detach_similarity: bool = True,
) -> Tensor:
    r"""HypHC triplet loss on hyperbolic proxies, Eq. (8)–(9), per triplet.

    For a triplet :math:`t = (i, j, k)` with pairwise similarities :math:`S_{pq} = e^{-D_H(p_p, p_q)}` (8):

    .. math:: L_{\mathrm{HypHC}}(t) = \sum_{p<q} S_{pq} - \sum_{p<q} S_{pq}\,
              \operatorname{softmax}_{\mathrm{pairs}}(d_{pq} / \gamma_{hyp}).

    ``variant="lca"`` (default, HypHC's reading): :math:`d_{pq}` is the depth of the hyperbolic LCA
    of the pair (``poincare.lca_depth``), so the loss is small when the most similar pair has the
    deepest LCA. ``variant="pairwise"``: the paper's literal :math:`d_{pq} = D_H(p_p, p_q)`.
    ``detach_similarity``: treat :math:`S` as constants each step, as HypHC does.

    The three distances and depths of each triplet come from ``poincare.group_dist_lca``: from the
    triplet's Gram matrix (norms and inner products), not from (M, 3, D) pair tensors.

    ``proxies_h``: (C, K, D) or (P, D) points in the ball; ``triplets``: (M, 3) integer flat proxy
    indices ``class * K + k``, ``M >= 1`` -> (M,) losses.
    """
    check_hyphc("variant", variant)
    gamma_hyp = check_positive(gamma_hyp, "gamma_hyp")
    if not isinstance(detach_similarity, bool):
        raise TypeError(f"detach_similarity must be True or False, got {detach_similarity!r}")
    if not isinstance(proxies_h, Tensor) or not proxies_h.dtype.is_floating_point or proxies_h.dim() < 2:
        raise TypeError("proxies_h must be a floating-point (C, K, D) or (P, D) tensor of points in the ball")
    # (P, D) as it is: a reshape, even to the same shape, would make its gradient a view (added out of place)
    flat = proxies_h if proxies_h.dim() == 2 else proxies_h.reshape(-1, proxies_h.shape[-1])
    check_index_tensor(triplets, "triplets", "flat proxy indices (M, 3)")
    if triplets.dim() != 2 or triplets.shape[1] != 3:
        raise ValueError(f"triplets must be an (M, 3) LongTensor, got shape {tuple(triplets.shape)}")
    if triplets.shape[0] == 0:
        raise ValueError("triplets holds M = 0 triplets: the HypHC loss is averaged over them; pass M >= 1 (or set tau = 0)")
    if int(triplets.min()) < 0 or int(triplets.max()) >= flat.shape[0]:
        raise ValueError(f"triplets index proxies in [0, {flat.shape[0]}), found {int(triplets.min())}..{int(triplets.max())}")
    poincare.check_in_ball(flat, c, "proxies_h")
    with poincare.checks(False):  # checked above, under this function's names
        d_pairs, depth = poincare.group_dist_lca(flat, triplets, c, lca=variant == "lca")  # (M, 3): (i,j), (i,k), (j,k)
    S = torch.exp(-d_pairs)
    if detach_similarity:
        S = S.detach()
    d = depth if variant == "lca" else d_pairs
    w = torch.softmax(d / gamma_hyp, dim=-1)
    return S.sum(-1) - (S * w).sum(-1)


# --------------------------------------------------------------------------------------------
# CHEST (Eq. 10)
# --------------------------------------------------------------------------------------------
class CHESTOutput(NamedTuple):
    """What :func:`chest_loss` returns: the total of Eq. (10), its three (unweighted) components, and
    the soft similarities of the batch to every class in both spaces (for the paper's Fig. 3)."""

    loss: Tensor  #: scalar, Eq. (10)
    l_h: Tensor  #: scalar, mean of L_H(x_i) (Eq. 7, hyperbolic)
    l_e: Tensor  #: scalar, mean of L_E(x_i) (Eq. 7, Euclidean)
    l_hyphc: Tensor  #: scalar, mean of L_HypHC(t) (Eq. 9)
    s_h: Optional[Tensor]  #: (B, C) S_H(x_i, y), or None when eta_h = 0
    s_e: Optional[Tensor]  #: (B, C) S_E(x_i, y), or None when eta_e = 0


def chest_loss(
    x_e: Tensor,
    x_h: Tensor,
    labels: Tensor,
    proxies_e: Tensor,
    proxies_h: Tensor,
    triplets: Optional[Tensor],
    *,
    c: poincare.Curvature,
    gamma_e: float = 5.0,
    gamma_h: float = 5.0,
    lambda_e: float = 20.0,
    lambda_h: float = 20.0,
    delta_e: float,
    delta_h: float,
    eta_e: float = 1.0,
    eta_h: float = 1.0,
    tau: float = 0.5,
    gamma_hyp: float = 1.0,
    hyphc: str = "lca",
) -> CHESTOutput:
    r"""The CHEST loss, Eq. (10):

    .. math:: L = \frac1N\sum_i \big(\eta_H L_H(x_i) + \eta_E L_E(x_i)\big)
                  + \frac{\tau}{M}\sum_t L_{\mathrm{HypHC}}(t)

    ``x_e``: (B, D_E) Euclidean embeddings; ``x_h``: (B, D_H) points in the ball; ``labels``: (B,);
    ``proxies_e``: (C, K, D_E) Euclidean proxies; ``proxies_h``: (C, K, D_H) the same proxies through
    the hyperbolic head; ``triplets``: (M, 3) flat proxy indices (anchor, same class, other class),
    may be ``None`` when ``tau = 0``. ``D_E`` in Eq. 5 is the (unsquared) Euclidean distance,
    ``D_H`` the Poincaré distance (Eq. 2). A space whose weight ``eta`` is 0 is skipped entirely.
    An empty batch (``B = 0``) raises ``ValueError`` (the means of Eq. 10 would be NaN), as do
    non-finite inputs, points outside the ball and out-of-range hyperparameters.
    """
    check_chest_inputs(x_e, x_h, labels, proxies_e, proxies_h)
    poincare.check_curvature(c)
    check_hyphc("hyphc", hyphc)
    for name, value in (("gamma_e", gamma_e), ("gamma_h", gamma_h), ("lambda_e", lambda_e), ("lambda_h", lambda_h), ("gamma_hyp", gamma_hyp)):
        check_positive(value, name)
    delta_e, delta_h = check_real(delta_e, "delta_e"), check_real(delta_h, "delta_h")
    eta_e = check_positive(eta_e, "eta_e", allow_zero=True)
    eta_h = check_positive(eta_h, "eta_h", allow_zero=True)
    tau = check_positive(tau, "tau", allow_zero=True)
    C, K = proxies_e.shape[:2]
    zero = x_e.new_zeros(())
    l_h = l_e = l_hyp = zero
    s_h = s_e = None
    if eta_h > 0 or tau > 0:  # the errors name chest_loss's parameters; the geometry then runs unchecked
        poincare.check_in_ball(proxies_h, c, "proxies_h")
    if eta_h > 0:
        poincare.check_in_ball(x_h, c, "x_h")
        with poincare.checks(False):
            d_h = poincare.pairwise_dist(x_h, proxies_h.reshape(C * K, -1), c).view(-1, C, K)
        s_h = soft_similarity(d_h, gamma_h)
        l_h = proxy_loss(s_h, labels, lambda_h, delta_h).mean()
    if eta_e > 0:
        poincare.check_finite(x_e, "x_e")
        poincare.check_finite(proxies_e, "proxies_e")
        with poincare.checks(False):  # checked above, under this function's names
            d_e = poincare.pairwise_euclidean(x_e, proxies_e.reshape(C * K, -1)).view(-1, C, K)
        inputs = {"x_e": x_e, "proxies_e": proxies_e}  # finite, but their distances may overflow
        s_e = soft_similarity(check_overflow(d_e, "the distances D_E", inputs), gamma_e)
        check_overflow(s_e, "the similarities S_E", inputs)
        l_e = proxy_loss(s_e, labels, lambda_e, delta_e).mean()
    if tau > 0:
        msg = hyphc_needs_two_proxies(tau, K)
        if msg:
            raise ValueError(msg)
        if triplets is None or triplets.shape[0] < 1:
            raise ValueError("tau > 0 needs M >= 1 triplets (an (M, 3) LongTensor); pass triplets or set tau = 0")
        with poincare.checks(False):
            l_hyp = hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant=hyphc).mean()
    total = eta_h * l_h + eta_e * l_e + tau * l_hyp
    check_overflow(total, "the CHEST loss", {"x_e": x_e, "proxies_e": proxies_e})  # lambda * S_E may overflow
    return CHESTOutput(total, l_h, l_e, l_hyp, s_h, s_e)


def sample_triplets(C: int, K: int, M: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``M`` HypHC triplets of flat proxy indices ``class * K + k`` -> (M, 3) LongTensor:
    an anchor proxy, another proxy of the same class (``i != j``), a proxy of another class.
    ``C``, ``K``, ``M``: integers with ``C >= 2``, ``K >= 2``, ``M >= 1``."""
    C, K, M = check_count(C, "C"), check_count(K, "K"), check_count(M, "M")
    if C < 2 or K < 2 or M < 1:
        raise ValueError(f"triplets need C >= 2 classes, K >= 2 proxies per class and M >= 1, got C={C}, K={K}, M={M}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = generator
    cls = torch.randint(C, (M,), generator=g)
    i = torch.randint(K, (M,), generator=g)
    j = (i + torch.randint(1, K, (M,), generator=g)) % K
    other = (cls + torch.randint(1, C, (M,), generator=g)) % C
    k = torch.randint(K, (M,), generator=g)
    return torch.stack([cls * K + i, cls * K + j, other * K + k], dim=1)


# --------------------------------------------------------------------------------------------
# hard-negative paper: pairwise cross-entropy, Mix, and the weights of hard negatives
# --------------------------------------------------------------------------------------------
def pair_similarity(x: Tensor, y: Tensor, c: Optional[poincare.Curvature] = None, names: tuple[str, str] = ("x", "y")) -> Tensor:
    r"""Pairwise similarity (N, D) x (M, D) -> (N, M): cosine on the sphere (``c=None``; finite
    vectors, a zero vector has similarity 0) or :math:`-D_H` in the Poincaré ball of curvature ``c``
    (points in the ball). ``names``: how errors call ``x`` and ``y``."""
    for name, t in zip(names, (x, y)):
        check_values(t, name, "vectors (N, D)") if c is None else poincare.check_in_ball(t, c, name)
        if t.dim() != 2:
            raise ValueError(f"{name} must be an (N, D) tensor, got shape {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]} {tuple(x.shape)} and {names[1]} {tuple(y.shape)} must have the same D")
    if c is None:
        return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    with poincare.checks(False):  # checked above, under the caller's names
        return -poincare.pairwise_dist(x, y, c)


def _shifted(s: Tensor, t: float, mask: Optional[Tensor] = None) -> Tensor:
    """(s - max_k s) / t per row (the max over the entries not in ``mask``, detached): a softmax
    over the last dimension does not change, and a tiny temperature cannot overflow to inf - inf."""
    ref = s.detach() if mask is None else s.detach().masked_fill(mask, -math.inf)
    top = ref.amax(-1, keepdim=True)
    return (s - torch.where(torch.isfinite(top), top, torch.zeros_like(top))) / clamp_to_dtype(t, s.dtype)


def _positive_pairs(labels: Tensor) -> Tensor:
    """(B, B) mask of the positive pairs (i, j), j != i, same label; raises if there is none."""
    n = labels.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    if not bool(pos.any()):
        raise ValueError("pairwise cross-entropy needs at least one positive pair: two samples with the same label")
    return pos


def _pair_ce_from_logits(logits: Tensor, pos: Tensor) -> Tensor:
    """Mean over positive pairs (i, j), j != i, same label, of -log softmax_{k != i}(logits_i)[j]."""
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    logp = torch.log_softmax(logits.masked_fill(eye, -math.inf), dim=1)
    return -logp[pos].mean()


def pair_ce_loss(z: Tensor, labels: Tensor, t: float, c: Optional[poincare.Curvature] = None) -> Tensor:
    r"""Pairwise cross-entropy (Hyp-ViT; hard-negative paper), averaged over positive pairs:

    .. math:: L_i = -\log\frac{e^{s_{ij}/t}}{\sum_{k\ne i} e^{s_{ik}/t}},

    ``s = cos`` on the sphere (``c=None``) or ``s = -D_H`` in the ball (``c >= 0``; ``z`` in the ball).
    ``z``: (B, D), ``labels``: (B,) integer -> scalar. ``t``: temperature > 0 (any size: the logits
    are shifted by their row maximum before the division). No positive pair (e.g. ``B = 0``) raises.
    """
    t = check_positive(t, "t")
    if c is not None:
        poincare.check_curvature(c)
    if not isinstance(z, Tensor):
        raise TypeError(f"z must be a floating-point (B, D) tensor, got {type(z).__name__}")
    check_labels(labels, z.shape[0])
    pos = _positive_pairs(labels)
    s = pair_similarity(z, z, c, ("z", "z"))
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    return _pair_ce_from_logits(_shifted(s, t, eye), pos)


def mix_loss(z_e: Tensor, z_h: Tensor, labels: Tensor, t_e: float, t_h: float, lam: float, c: poincare.Curvature) -> Tensor:
    r"""The hard-negative paper's "Mix" geometry: pairwise cross-entropy on the logits
    :math:`\cos(z^E_i, z^E_k)/t_E + \lambda\,(-D_H(z^H_i, z^H_k))/t_H`.

    ``z_e``: (B, D_E), ``z_h``: (B, D_H) in the ball, ``labels``: (B,) integer -> scalar.
    """
    t_e, t_h = check_positive(t_e, "t_e"), check_positive(t_h, "t_h")
    lam = check_positive(lam, "lam", allow_zero=True)
    poincare.check_curvature(c)
    if not isinstance(z_e, Tensor) or not isinstance(z_h, Tensor):
        raise TypeError("z_e and z_h must be floating-point (B, D) tensors")
    check_labels(labels, z_e.shape[0])
    if z_h.shape[0] != z_e.shape[0]:
        raise ValueError(f"z_e {tuple(z_e.shape)} and z_h {tuple(z_h.shape)} need the same B")
    pos = _positive_pairs(labels)
    se, sh = pair_similarity(z_e, z_e, None, ("z_e", "z_e")), pair_similarity(z_h, z_h, c, ("z_h", "z_h"))
    eye = torch.eye(se.shape[0], dtype=torch.bool, device=se.device)
    logits = _shifted(se, t_e, eye) + lam * _shifted(sh, t_h, eye)
    return _pair_ce_from_logits(logits, pos)


def hard_negative_weights(anchor: Tensor, others: Tensor, t: float, c: Optional[poincare.Curvature] = None) -> Tensor:
    r"""The weights of the triplets in the gradient of the pairwise cross-entropy (hard-negative paper):

    .. math:: w_{ik} = \frac{e^{s_{ik}/t}}{\sum_{l\ne i} e^{s_{il}/t}}, \qquad
              \frac{\partial L_i}{\partial z} = \frac1t\sum_{k\ne i} w_{ik}\Big(\frac{\partial s_{ik}}{\partial z}
              - \frac{\partial s_{ij}}{\partial z}\Big).

    ``anchor``: (D,) or (B, D); ``others``: (N, D) or (B, N, D), ``N >= 1`` -> (N,) or (B, N), summing
    to 1. ``s`` is the cosine (``c=None``; finite vectors) or ``-D_H`` (``c >= 0``; points in the ball).
    """
    t = check_positive(t, "t")
    for name, x in (("anchor", anchor), ("others", others)):
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got {type(x).__name__ if not isinstance(x, Tensor) else x.dtype}")
    if others.dim() < 2 or anchor.dim() < 1 or anchor.shape[-1] != others.shape[-1]:
        raise ValueError(f"anchor (D,) or (B, D) and others (N, D) or (B, N, D) must share D, got {tuple(anchor.shape)} and {tuple(others.shape)}")
    if others.shape[-2] == 0:
        raise ValueError("others holds N = 0 points: the weights of no triplets are undefined; pass N >= 1")
    if c is None:
        check_values(anchor, "anchor", "vectors")
        check_values(others, "others", "vectors")
        s = F.cosine_similarity(anchor.unsqueeze(-2), others, dim=-1)
    else:
        poincare.check_in_ball(anchor, c, "anchor")
        poincare.check_in_ball(others, c, "others")
        with poincare.checks(False):  # checked above, under this function's names
            s = -poincare.dist(anchor.unsqueeze(-2), others, c)
    return torch.softmax(_shifted(s, t), dim=-1)
