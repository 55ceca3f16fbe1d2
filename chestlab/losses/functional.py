r"""The functional core of the losses: CHEST and its parts (Eq. 5–10), and the losses of the
hard-negative paper.

Every function takes its tensors explicitly and returns per-sample values (or a scalar where the
paper averages), so tests and notebooks call them directly. The registered, trainable modules
(:mod:`chestlab.losses.chest`, ``pair_ce``, ``mix``) are thin wrappers that own parameters and
sampling and call these functions.

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
    "check_positive",
    "check_labels",
    "check_hyphc",
    "check_chest_inputs",
]


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` unless finite and > 0 (>= 0 with ``allow_zero``)."""
    v = float(value)
    ok = (v >= 0 if allow_zero else v > 0) and math.isfinite(v)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} = {value!r} is out of range: {name} must be finite and {bound}")
    return v


def check_labels(labels: Tensor, B: int, C: Optional[int] = None) -> None:
    """``labels`` must be (B,) class indices in [0, C)."""
    if labels.dim() != 1 or labels.shape[0] != B:
        raise ValueError(f"labels must be a (B,) = ({B},) tensor of class indices, got shape {tuple(labels.shape)}")
    if C is not None:
        if C < 2:
            raise ValueError(f"C = {C}: the proxy loss needs C >= 2 classes (a softmax over one class is constant)")
        if B and (int(labels.min()) < 0 or int(labels.max()) >= C):
            raise ValueError(f"labels must lie in [0, C) = [0, {C}), found {int(labels.min())}..{int(labels.max())}")


def check_hyphc(name: str, value: str) -> None:
    """The HypHC reading of Eq. 9: "lca" or "pairwise"."""
    if value not in ("lca", "pairwise"):
        raise ValueError(f"{name} = {value!r}: choose 'lca' (HypHC's reading of Eq. 9) or 'pairwise' (the literal reading)")


# --------------------------------------------------------------------------------------------
# SoftTriple-style proxy loss (Eq. 5–7)
# --------------------------------------------------------------------------------------------
def soft_similarity(d: Tensor, gamma: float) -> Tensor:
    r"""Soft similarity of a sample to a class over its ``K`` proxies, Eq. (5)/(6):

    .. math:: S(x, p_c) = -\sum_k \operatorname{softmax}_k(-d_k/\gamma)\, d_k,
              \quad d_k = D(x, p_{c,k}).

    A soft minimum of the distances: ``gamma -> 0`` gives ``-min_k d_k``, large ``gamma`` the mean.
    ``d``: (..., K) distances -> (...). With ``K = 1`` it is ``-d``.
    """
    gamma = check_positive(gamma, "gamma")
    # softmax written out: torch's softmax over a last dimension of K ~ 10 is 4x slower (CPU,
    # forward + backward); the shift by the row max cancels in the ratio, so it may be constant
    a = d * (-1.0 / gamma)
    e = (a - a.detach().amax(-1, keepdim=True)).exp()
    return -(e * d).sum(-1) / e.sum(-1)


def proxy_loss(S: Tensor, labels: Tensor, lam: float, delta: float) -> Tensor:
    r"""Per-sample margin loss, Eq. (7): cross-entropy over classes of the logits
    :math:`\lambda (S_c - \delta\,\mathbb 1[c = c_i])`.

    ``S``: (B, C) soft similarities, ``labels``: (B,) -> (B,) losses :math:`L(x_i)`.
    """
    lam = check_positive(lam, "lambda")
    delta = float(delta)
    if S.dim() != 2:
        raise ValueError(f"S must be (B, C), got shape {tuple(S.shape)}")
    check_labels(labels, S.shape[0], S.shape[1])
    onehot = F.one_hot(labels, S.shape[1]).to(S.dtype)
    return F.cross_entropy(lam * (S - delta * onehot), labels, reduction="none")


# --------------------------------------------------------------------------------------------
# HypHC regulariser on the proxies (Eq. 8–9)
# --------------------------------------------------------------------------------------------
_PAIRS = ((0, 1), (0, 2), (1, 2))


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

    ``proxies_h``: (C, K, D) or (P, D) points in the ball; ``triplets``: (M, 3) flat proxy indices
    ``class * K + k`` -> (M,) losses.
    """
    check_hyphc("variant", variant)
    gamma_hyp = check_positive(gamma_hyp, "gamma_hyp")
    flat = proxies_h.reshape(-1, proxies_h.shape[-1])
    if triplets.dim() != 2 or triplets.shape[1] != 3:
        raise ValueError(f"triplets must be an (M, 3) LongTensor, got shape {tuple(triplets.shape)}")
    if triplets.numel() and (int(triplets.min()) < 0 or int(triplets.max()) >= flat.shape[0]):
        raise ValueError(f"triplets index proxies in [0, {flat.shape[0]}), found {int(triplets.min())}..{int(triplets.max())}")
    p = flat[triplets]  # (M, 3, D)
    first = [a for a, _ in _PAIRS]
    second = [b for _, b in _PAIRS]
    pa, pb = p[:, first], p[:, second]  # (M, 3, D): pairs (i,j), (i,k), (j,k)
    d_pairs = poincare.dist(pa, pb, c)  # (M, 3)
    S = torch.exp(-d_pairs)
    if detach_similarity:
        S = S.detach()
    d = poincare.lca_depth(pa, pb, c) if variant == "lca" else d_pairs
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
    s_h: Optional[Tensor]  #: (B, C) S_H(x_i, p_c), or None when eta_h = 0
    s_e: Optional[Tensor]  #: (B, C) S_E(x_i, p_c), or None when eta_e = 0


def check_chest_inputs(x_e: Tensor, x_h: Tensor, labels: Tensor, proxies_e: Tensor, proxies_h: Tensor) -> None:
    """Shapes of Eq. 10's inputs: (B, D_E), (B, D_H), (B,), (C, K, D_E), (C, K, D_H)."""
    if proxies_e.dim() != 3 or proxies_h.dim() != 3:
        raise ValueError(
            f"proxies must be (C, K, D): got proxies_e {tuple(proxies_e.shape)}, proxies_h {tuple(proxies_h.shape)}"
        )
    if proxies_e.shape[:2] != proxies_h.shape[:2]:
        raise ValueError(f"proxies_e {tuple(proxies_e.shape)} and proxies_h {tuple(proxies_h.shape)} need the same (C, K)")
    B = labels.shape[0]
    if x_e.shape[0] != B or x_h.shape[0] != B:
        raise ValueError(f"x_e {tuple(x_e.shape)}, x_h {tuple(x_h.shape)} and labels {tuple(labels.shape)} need the same B")
    if x_e.shape[-1] != proxies_e.shape[-1] or x_h.shape[-1] != proxies_h.shape[-1]:
        raise ValueError("embedding and proxy dimensions differ: x_e/proxies_e and x_h/proxies_h must share D")
    check_labels(labels, B, proxies_e.shape[0])


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
    """
    check_chest_inputs(x_e, x_h, labels, proxies_e, proxies_h)
    poincare.check_curvature(c)
    check_hyphc("hyphc", hyphc)
    for name, value in (("gamma_e", gamma_e), ("gamma_h", gamma_h), ("lambda_e", lambda_e), ("lambda_h", lambda_h), ("gamma_hyp", gamma_hyp)):
        check_positive(value, name)
    eta_e = check_positive(eta_e, "eta_e", allow_zero=True)
    eta_h = check_positive(eta_h, "eta_h", allow_zero=True)
    tau = check_positive(tau, "tau", allow_zero=True)
    C, K = proxies_e.shape[:2]
    zero = x_e.new_zeros(())
    l_h = l_e = l_hyp = zero
    s_h = s_e = None
    if eta_h > 0:
        d_h = poincare.pairwise_dist(x_h, proxies_h.reshape(C * K, -1), c).view(-1, C, K)
        s_h = soft_similarity(d_h, gamma_h)
        l_h = proxy_loss(s_h, labels, lambda_h, delta_h).mean()
    if eta_e > 0:
        d_e = torch.cdist(x_e, proxies_e.reshape(C * K, -1)).view(-1, C, K)
        s_e = soft_similarity(d_e, gamma_e)
        l_e = proxy_loss(s_e, labels, lambda_e, delta_e).mean()
    if tau > 0:
        if K < 2:
            raise ValueError(
                f"tau = {tau} > 0 needs K >= 2 proxies per class (HypHC triplets pair two proxies of one "
                f"class), got K = {K}; set tau = 0 or K >= 2"
            )
        if triplets is None or triplets.shape[0] < 1:
            raise ValueError("tau > 0 needs M >= 1 triplets (an (M, 3) LongTensor); pass triplets or set tau = 0")
        l_hyp = hyphc_loss(proxies_h, triplets, c, gamma_hyp, variant=hyphc).mean()
    total = eta_h * l_h + eta_e * l_e + tau * l_hyp
    return CHESTOutput(total, l_h, l_e, l_hyp, s_h, s_e)


def sample_triplets(C: int, K: int, M: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``M`` HypHC triplets of flat proxy indices ``class * K + k`` -> (M, 3) LongTensor:
    an anchor proxy, another proxy of the same class (``i != j``), a proxy of another class."""
    if C < 2 or K < 2 or M < 1:
        raise ValueError(f"triplets need C >= 2 classes, K >= 2 proxies per class and M >= 1, got C={C}, K={K}, M={M}")
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
def pair_similarity(x: Tensor, y: Tensor, c: Optional[poincare.Curvature] = None) -> Tensor:
    r"""Pairwise similarity (N, D) x (M, D) -> (N, M): cosine on the sphere (``c=None``) or
    :math:`-D_H` in the Poincaré ball of curvature ``c``."""
    if c is None:
        return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    return -poincare.pairwise_dist(x, y, c)


def _pair_ce_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over positive pairs (i, j), j != i, same label, of -log softmax_{k != i}(logits_i)[j]."""
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    logp = torch.log_softmax(logits.masked_fill(eye, -math.inf), dim=1)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    if not bool(pos.any()):
        raise ValueError("pairwise cross-entropy needs at least one positive pair: two samples with the same label")
    return -logp[pos].mean()


def pair_ce_loss(z: Tensor, labels: Tensor, t: float, c: Optional[poincare.Curvature] = None) -> Tensor:
    r"""Pairwise cross-entropy (Hyp-ViT; hard-negative paper), averaged over positive pairs:

    .. math:: L_i = -\log\frac{e^{s_{ij}/t}}{\sum_{k\ne i} e^{s_{ik}/t}},

    ``s = cos`` on the sphere (``c=None``) or ``s = -D_H`` in the ball (``c >= 0``; ``z`` in the ball).
    ``z``: (B, D), ``labels``: (B,) -> scalar. ``t``: temperature > 0.
    """
    t = check_positive(t, "t")
    check_labels(labels, z.shape[0])
    return _pair_ce_from_logits(pair_similarity(z, z, c) / t, labels)


def mix_loss(z_e: Tensor, z_h: Tensor, labels: Tensor, t_e: float, t_h: float, lam: float, c: poincare.Curvature) -> Tensor:
    r"""The hard-negative paper's "Mix" geometry: pairwise cross-entropy on the logits
    :math:`\cos(z^E_i, z^E_k)/t_E + \lambda\,(-D_H(z^H_i, z^H_k))/t_H`.

    ``z_e``: (B, D_E), ``z_h``: (B, D_H) in the ball, ``labels``: (B,) -> scalar.
    """
    t_e, t_h = check_positive(t_e, "t_e"), check_positive(t_h, "t_h")
    lam = check_positive(lam, "lam", allow_zero=True)
    check_labels(labels, z_e.shape[0])
    logits = pair_similarity(z_e, z_e) / t_e + lam * pair_similarity(z_h, z_h, c) / t_h
    return _pair_ce_from_logits(logits, labels)


def hard_negative_weights(anchor: Tensor, others: Tensor, t: float, c: Optional[poincare.Curvature] = None) -> Tensor:
    r"""The weights of the triplets in the gradient of the pairwise cross-entropy (hard-negative paper):

    .. math:: w_{ik} = \frac{e^{s_{ik}/t}}{\sum_{l\ne i} e^{s_{il}/t}}, \qquad
              \frac{\partial L_i}{\partial z} = \frac1t\sum_{k\ne i} w_{ik}\Big(\frac{\partial s_{ik}}{\partial z}
              - \frac{\partial s_{ij}}{\partial z}\Big).

    ``anchor``: (D,) or (B, D); ``others``: (N, D) or (B, N, D) -> (N,) or (B, N), summing to 1.
    ``s`` is the cosine (``c=None``) or ``-D_H`` (``c >= 0``).
    """
    t = check_positive(t, "t")
    if c is None:
        s = F.cosine_similarity(anchor.unsqueeze(-2), others, dim=-1)
    else:
        s = -poincare.dist(anchor.unsqueeze(-2), others, c)
    return torch.softmax(s / t, dim=-1)
