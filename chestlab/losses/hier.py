r"""HIER (Kim, Jeong & Kwak, CVPR 2023): learnable **hierarchical proxies** in the ball, trained with
the data so that they become the internal nodes of a latent hierarchy, as a regulariser next to a
base loss (CHEST, the pairwise cross-entropy). Symbols as in docs/maths.md.

**The proxies.** :math:`\rho_1 \dots \rho_P`, points of the ball with no class: a tangent vector
:math:`\xi_p \in \mathbb R^{D_H}` per proxy (the parameter), mapped like the data,
:math:`\rho_p = \exp^c_0(\operatorname{clip}_r(\xi_p))` with the head's ``c`` and ``r``;
initialised :math:`\xi_p \sim 0.9\,r\,\mathcal N(0, I)/\sqrt{D_H}` (norm about ``0.9 r``).

**The LCA proxies.** For a group of nodes (samples or proxies), its radius seen from proxy
:math:`\rho`: :math:`\nu^{ij}_\rho = \max(d_H(i, \rho), d_H(j, \rho))` and
:math:`\nu^{ijk}_\rho = \max(\nu^{ij}_\rho, d_H(k, \rho))`. The LCA is picked by a hard Gumbel-softmax
at temperature :math:`\tau_{HIER}`:

.. math::

    \psi_\rho = -\nu_\rho/\tau_{HIER} + \zeta_\rho, \quad \zeta_\rho \sim \mathrm{Gumbel}(0, 1), \qquad
    \rho_{ij} = \arg\max_\rho \psi^{ij}_\rho, \quad \rho_{ijk} = \arg\max_\rho \psi^{ijk}_\rho

(without the noise: the proxy whose farthest group member is nearest). Straight-through: with
:math:`\sigma = \operatorname{softmax}(\psi)` the selection vector is
:math:`\chi = \operatorname{onehot}(\arg\max \psi) + (\sigma - \operatorname{sg}[\sigma])`, and
the distance of node ``x`` to the LCA is :math:`\sum_\rho \chi_\rho\, d_H(x, \rho)`: its value is
exactly :math:`d_H(x, \rho_{ij})`, its gradient also flows through :math:`\sigma` into every
:math:`\nu` (``sg`` = stop-gradient).

**The triplet loss** (the indicator is a constant):

.. math::

    L_{HIER}(i, j, k) = \mathbb 1[\rho_{ij} \ne \rho_{ijk}]\Big(
        [d_H(i, \rho_{ij}) - d_H(i, \rho_{ijk}) + \delta_{hier}]_+
        + [d_H(j, \rho_{ij}) - d_H(j, \rho_{ijk}) + \delta_{hier}]_+
        + [d_H(k, \rho_{ijk}) - d_H(k, \rho_{ij}) + \delta_{hier}]_+\Big),

averaged over the mined triplets (the zeros included).

**Mining.** A detached similarity :math:`\omega_{ab} = e^{-d_H(a, b)}` (as Eq. 8), plus 1 when ``a``
and ``b`` share a label (batch only; the proxies have none). :math:`\mathrm{nn}_\kappa(a)` = the
:math:`\kappa` nodes most similar to ``a`` (``a`` itself included). The positives of an anchor ``i``
are its reciprocal neighbours :math:`\{j \ne i : j \in \mathrm{nn}_\kappa(i), i \in \mathrm{nn}_\kappa(j)\}`,
its negatives every other node but itself. Each anchor with a positive and a negative gets
``hier_triplets`` triplets, ``j`` and ``k`` drawn uniformly with replacement.

**The regulariser**: the mean triplet loss on triplets mined among the batch (the proxies as
candidate LCAs) plus the same among the proxies (then both the nodes and the candidate LCAs, so a
proxy may be its own group's LCA):

.. math:: L = L_{base} + \eta_{HIER}\,\big(\overline{L_{HIER}}^{\,batch} + \overline{L_{HIER}}^{\,proxies}\big).

Every random draw (the mining, the Gumbel noise) comes from the term's own ``torch.Generator``,
saved with the checkpoint, so a resumed run draws the same ones.

Where the kit departs from the authors' code (``HIERLoss`` of ``tjddus9597/HIER-CVPR23``): an anchor
with a single positive is kept (the authors skip it) and an anchor is never its own negative (the
authors' negatives include the anchor itself); the proxies are mapped by plain ``exp_0``/``clip_r``
(the authors rescale their gradient into a Riemannian one); ``P``, :math:`\kappa` and the triplets per
anchor are settings (the authors fix 50 triplets per anchor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import poincare
from ..settings import BIG, MAX_ELEMENTS, Problem, TrainConfig, setting, too_big
from .base import Loss, LossContext, Step, Term, register_loss
from .chest import CHESTLoss
from .pairwise import PairCELoss

__all__ = [
    "HIERSettings", "HIERTerm", "CHESTHIERLoss", "PairCEHIERLoss", "CHESTHIERSettings",
    "PairCEHIERSettings", "LCATriplets", "hier_similarity", "reciprocal_triplets", "gumbel_noise", "lca_select",
    "lca_triplet_loss", "hier_loss", "hier_parents", "hier_group_hparams",
]


# --------------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------------
def hier_similarity(d: Tensor, labels: Optional[Tensor] = None) -> Tensor:
    r"""The mining similarity :math:`\omega_{ab} + \mathbb 1[y_a = y_b]`, :math:`\omega_{ab} = e^{-d_{ab}}` (the label term
    only with ``labels``), detached. ``d``: (N, N) distances -> (N, N)."""
    if d.dim() != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"d must be a square (N, N) distance matrix, got shape {tuple(d.shape)}")
    s = torch.exp(-d.detach())
    if labels is not None:
        if labels.shape != (d.shape[0],):
            raise ValueError(f"labels must be (N,) = ({d.shape[0]},), got shape {tuple(labels.shape)}")
        s = s + (labels[:, None] == labels[None, :]).to(s.dtype)
    return s


def reciprocal_triplets(sim: Tensor, topk: int, per_anchor: int, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Mine triplets ``(i, j, k)`` from a similarity ``sim`` (N, N) -> (T, 3) LongTensor on the CPU.

    :math:`\mathrm{nn}_\kappa(a)` = the ``topk`` columns of row ``a`` with the largest similarity
    (``topk`` = :math:`\kappa`, clipped to N; the node itself normally is one of them). Positives of
    ``i``: the reciprocal neighbours :math:`j \ne i` with :math:`j \in \mathrm{nn}_\kappa(i)` and
    :math:`i \in \mathrm{nn}_\kappa(j)`; negatives: every
    other :math:`k \ne i`. Each anchor with at least one positive and one negative gets
    ``per_anchor`` triplets, ``j`` and ``k`` drawn uniformly with replacement from ``generator``
    (anchors in increasing order, ``per_anchor`` consecutive rows each)."""
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be a square (N, N) similarity, got shape {tuple(sim.shape)}")
    counts = (topk, per_anchor)
    if any(isinstance(v, bool) or int(v) != v or v < 1 for v in counts):
        raise ValueError(f"topk and per_anchor must be integers >= 1, got topk={topk!r}, per_anchor={per_anchor!r}")
    sim = sim.detach().cpu()
    n = sim.shape[0]
    if n < 3:
        return torch.zeros(0, 3, dtype=torch.long)
    top = sim.topk(min(int(topk), n), dim=1).indices
    near = torch.zeros(n, n, dtype=torch.bool).scatter_(1, top, True)
    eye = torch.eye(n, dtype=torch.bool)
    pos = near & near.T & ~eye
    neg = ~pos & ~eye
    anchors = (pos.any(1) & neg.any(1)).nonzero().squeeze(1)
    if anchors.numel() == 0:
        return torch.zeros(0, 3, dtype=torch.long)
    j = torch.multinomial(pos[anchors].double(), int(per_anchor), replacement=True, generator=generator)
    k = torch.multinomial(neg[anchors].double(), int(per_anchor), replacement=True, generator=generator)
    i = anchors[:, None].expand_as(j)
    return torch.stack([i.reshape(-1), j.reshape(-1), k.reshape(-1)], dim=1)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Standard Gumbel noise :math:`\zeta = -\log(-\log u)`, :math:`u \sim U(0, 1)`, of ``shape`` on
    ``device``. One 63-bit seed is drawn from ``generator`` (a CPU generator) and seeds a generator
    on ``device``, so ``generator``'s state alone decides the noise and large tensors are drawn on
    the device."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)
    u = torch.rand(shape, generator=g, device=device, dtype=dtype)
    u = u.clamp(min=torch.finfo(dtype).tiny)
    return -torch.log(-torch.log(u))


def lca_select(nu: Tensor, tau: float, noise: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    r"""Hard Gumbel-softmax over proxies with a straight-through gradient.

    ``nu``: (T, P) group radii :math:`\nu` (the largest distance of the group to each proxy);
    ``noise``: (T, P) Gumbel noise :math:`\zeta` or None. With :math:`\psi = -\nu/\tau + \zeta` and
    :math:`\sigma = \operatorname{softmax}(\psi)`: returns ``(chi, idx)`` with ``idx = argmax ψ`` (T,)
    and :math:`\chi = \operatorname{onehot}(idx) + (\sigma - \operatorname{sg}[\sigma])` (T, P), whose
    value is exactly the one-hot and whose gradient is that of :math:`\sigma`."""
    if not tau > 0:
        raise ValueError(f"tau = {tau!r}: the temperature of the LCA selection must be > 0")
    logits = -nu / tau
    if noise is not None:
        logits = logits + noise
    soft = torch.softmax(logits, dim=-1)
    idx = logits.detach().argmax(-1)
    hard = F.one_hot(idx, nu.shape[-1]).to(nu.dtype)
    return hard + (soft - soft.detach()), idx  # bracketed: the value is exactly the one-hot


class LCATriplets(NamedTuple):
    """Per-triplet HIER losses (T,) and the chosen LCA proxies ``lca_ij``, ``lca_ijk`` (T,)."""

    loss: Tensor
    lca_ij: Tensor
    lca_ijk: Tensor


def lca_triplet_loss(d: Tensor, triplets: Tensor, margin: float, tau: float,
                     noise: Optional[tuple[Tensor, Tensor]] = None) -> LCATriplets:
    r"""The HIER triplet loss for each triplet (see the module docstring).

    ``d``: (N, P) distances from the N nodes (samples or proxies) to the P hierarchical proxies;
    ``triplets``: (T, 3) node indices ``(i, j, k)``; ``noise``: the Gumbel noise of the two
    selections, two (T, P) tensors, or None (plain argmin of the max distance)."""
    if d.dim() != 2:
        raise ValueError(f"d must be (N, P) node-to-proxy distances, got shape {tuple(d.shape)}")
    if triplets.dim() != 2 or triplets.shape[1] != 3:
        raise ValueError(f"triplets must be (T, 3), got shape {tuple(triplets.shape)}")
    if not margin >= 0:
        raise ValueError(f"margin = {margin!r}: the HIER margin must be >= 0")
    i, j, k = triplets.to(d.device).unbind(1)
    di, dj, dk = d[i], d[j], d[k]
    nu_ij = torch.maximum(di, dj)  # (T, P) the group's radius seen from each proxy
    nu_ijk = torch.maximum(nu_ij, dk)
    z1, z2 = noise if noise is not None else (None, None)
    chi_ij, a_ij = lca_select(nu_ij, tau, z1)
    chi_ijk, a_ijk = lca_select(nu_ijk, tau, z2)
    # d_H(x, rho_S) = sum_rho chi_rho d_H(x, rho): the value of the chosen proxy, the gradient of the softmax too
    i_ij, i_ijk = (di * chi_ij).sum(1), (di * chi_ijk).sum(1)
    j_ij, j_ijk = (dj * chi_ij).sum(1), (dj * chi_ijk).sum(1)
    k_ij, k_ijk = (dk * chi_ij).sum(1), (dk * chi_ijk).sum(1)
    loss = torch.relu(i_ij - i_ijk + margin) + torch.relu(j_ij - j_ijk + margin) + torch.relu(k_ijk - k_ij + margin)
    loss = loss * (a_ij != a_ijk).to(loss.dtype)
    return LCATriplets(loss, a_ij, a_ijk)


def _mean_triplet_loss(d_nodes: Tensor, d_lca: Tensor, labels: Optional[Tensor], *, margin: float, tau: float,
                       topk: int, per_anchor: int, generator: torch.Generator) -> Tensor:
    """Mine among the nodes (``d_nodes`` (N, N)), then the mean HIER loss with LCAs among ``d_lca`` (N, P)."""
    trip = reciprocal_triplets(hier_similarity(d_nodes, labels), topk, per_anchor, generator)
    if trip.shape[0] == 0:
        return d_lca.sum() * 0
    T, P = trip.shape[0], d_lca.shape[1]
    noise = gumbel_noise((2, T, P), generator, d_lca.device, d_lca.dtype)
    return lca_triplet_loss(d_lca, trip, margin, tau, (noise[0], noise[1])).loss.mean()


def hier_loss(x_h: Tensor, labels: Optional[Tensor], proxies_h: Tensor, c: poincare.Curvature, *, margin: float,
              tau: float, topk: int, per_anchor: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    r"""HIER's two means: ``(L_batch, L_proxies)``.

    ``x_h``: (B, D) samples in the ball, ``labels``: (B,) or None, ``proxies_h``: (P, D) hierarchical
    proxies in the ball. One (B+P, B+P) matrix of :math:`d_H`; the batch's triplets are mined with the
    label-boosted similarity and use the proxies as LCAs; the proxies' triplets are mined among the
    proxies (no labels) and use the proxies as LCAs too. Random draws, in this order: batch mining,
    batch noise, proxy mining, proxy noise — all from ``generator``."""
    B = x_h.shape[0]
    nodes = torch.cat([x_h, proxies_h.to(x_h.dtype)])
    d = poincare.pairwise_dist(nodes, nodes, c)
    kw = dict(margin=margin, tau=tau, topk=topk, per_anchor=per_anchor, generator=generator)
    l_batch = _mean_triplet_loss(d[:B, :B], d[:B, B:], labels, **kw)
    l_proxy = _mean_triplet_loss(d[B:, B:], d[B:, B:], None, **kw)
    return l_batch, l_proxy


def hier_parents(proxies_h: Tensor, c: poincare.Curvature, x_h: Optional[Tensor] = None) -> dict[str, Tensor]:
    r"""The tree the hierarchical proxies draw (HIER's Fig. 3).

    ``proxy_parent`` (P,): the parent of proxy ``q`` is the proxy nearest to it (:math:`d_H`) among
    those closer to the origin (:math:`\lVert\rho_p\rVert < \lVert\rho_q\rVert`): ancestors sit nearer
    the root; the proxy nearest the origin is the root (``-1``). With ``x_h`` (N, D): ``x_parent``
    (N,), each sample's LCA proxy as a group of one — its nearest proxy. The children of proxy ``p``
    are the samples with ``x_parent == p`` and the proxies with ``proxy_parent == p``."""
    p = proxies_h.detach()
    d = poincare.pairwise_dist(p, p, c)
    norm = p.norm(dim=1)
    shallower = norm[None, :] < norm[:, None]  # [q, p]: p is nearer the origin than q
    d = torch.where(shallower, d, torch.full_like(d, math.inf))
    parent = d.argmin(1)
    parent[~shallower.any(1)] = -1
    out = {"proxy_parent": parent}
    if x_h is not None:
        out["x_parent"] = poincare.pairwise_dist(x_h.detach().to(p.dtype), p, c).argmin(1)
    return out


# --------------------------------------------------------------------------------------------
# settings and the part
# --------------------------------------------------------------------------------------------
@dataclass
class HIERSettings:
    """The settings of the HIER regulariser."""

    hier_weight: float = setting(0.5, group="loss", live=True, low=0, high=BIG, symbol="η_HIER", paper="0.5 (λ2 of the authors' scripts)",
                                 help="weight of the HIER regulariser next to the base loss; 0 = off",
                                 ui={"lo": 0.0, "hi": 2.0, "step": 0.05})
    hier_proxies: int = setting(32, group="loss", low=2, high=4096, symbol="P", paper="512",
                                help="hierarchical proxies: learned points of the ball with no class", ui={"lo": 2, "hi": 512, "step": 1})
    hier_margin: float = setting(0.1, group="loss", live=True, low=0, high=BIG, symbol="δ_hier", paper="0.1",
                                 help="margin of the HIER triplet loss (in d_H)", ui={"lo": 0.0, "hi": 2.0, "step": 0.05})
    hier_tau: float = setting(0.1, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="τ_HIER", paper="0.1",
                              help="temperature of the Gumbel-softmax that picks the LCA proxies", ui={"lo": 0.01, "hi": 2.0, "step": 0.01})
    hier_topk: int = setting(20, group="loss", live=True, low=2, high=4096, symbol="κ", paper="20 (the authors' code: 30 by default)",
                             help="mutual top-k neighbours (self included) are positives when HIER mines triplets",
                             ui={"lo": 2, "hi": 64, "step": 1})
    hier_triplets: int = setting(20, group="loss", live=True, low=1, high=1000, paper="50",
                                 help="triplets mined per anchor, among the batch and among the proxies", ui={"lo": 1, "hi": 100, "step": 1})
    hier_lr_scale: Optional[float] = setting(None, group="optim", live=True, low=0, low_open=True, high=BIG, nullable=True,
                                             paper="50 (the authors' lr_scale of the hierarchical proxies)",
                                             help="learning rate of the hierarchical proxies as a multiple of lr (none = "
                                                  "lr_proxy, as the class proxies)")
    hier_weight_decay: Optional[float] = setting(0.0, group="optim", live=True, low=0, high=BIG, nullable=True,
                                                 paper="the run's weight decay (1e-2 CUB/Cars, 1e-4 SOP)",
                                                 help="AdamW weight decay of the hierarchical proxies (none = weight_decay, "
                                                      "as the authors' code; 0 = none, as the class proxies)")


def hier_group_hparams(cfg: Any) -> dict[str, float]:
    r"""``{"lr", "weight_decay"}`` of the hierarchical proxies' optimizer group ``hier``: lr
    :math:`= s\,\mathrm{lr}` with ``s = hier_lr_scale`` (the authors: 50), else ``lr_proxy``; weight decay
    ``hier_weight_decay``, or the run's ``weight_decay`` when it is None (the authors' code)."""
    lr = cfg.hier_lr_scale * cfg.lr if cfg.hier_lr_scale is not None else cfg.lr_proxy
    wd = cfg.weight_decay if cfg.hier_weight_decay is None else cfg.hier_weight_decay
    return {"lr": float(lr), "weight_decay": float(wd)}


def hier_rules(cfg: TrainConfig) -> Iterable[Problem]:
    """Rules of the HIER settings."""
    if cfg.hier_weight == 0:
        yield Problem(("hier_weight",), "hier_weight = 0: HIER is off and the loss is its base loss alone", "warning")
    # Gumbel noise (2, T, P) for T = (B + P) x hier_triplets mined triplets: the largest tensor of HIER
    n_nodes, P = cfg.batch_size + cfg.hier_proxies, cfg.hier_proxies
    msg = too_big(f"HIER's triplets ((batch_size + hier_proxies) x hier_triplets = {n_nodes} x {cfg.hier_triplets}, each "
                  f"against P = {P} proxies, twice)", 2 * n_nodes * cfg.hier_triplets * P,
                  f"hier_triplets <= {MAX_ELEMENTS // (2 * n_nodes * P)} here, or fewer hier_proxies")
    if msg:
        yield Problem(("hier_triplets", "hier_proxies", "batch_size"), msg)
    if cfg.hier_topk >= cfg.batch_size:
        yield Problem(("hier_topk", "batch_size"), f"hier_topk = {cfg.hier_topk} >= batch_size = {cfg.batch_size}: every "
                      "sample of the batch is a neighbour of every other; HIER mines no batch negatives", "warning")
    if cfg.hier_topk >= cfg.hier_proxies:
        yield Problem(("hier_topk", "hier_proxies"), f"hier_topk = {cfg.hier_topk} >= hier_proxies = {cfg.hier_proxies}: "
                      "every proxy is a neighbour of every other; HIER mines no triplets among the proxies", "warning")


class HIERTerm(Term):
    r"""The HIER regulariser as a term that joins any loss (:meth:`Loss.with_terms`): part ``l_hier``
    :math:`= \overline{L_{HIER}}^{\,batch} + \overline{L_{HIER}}^{\,proxies}`, weight ``hier_weight``,
    settings section :class:`HIERSettings`, rules :func:`hier_rules`, optimizer group ``hier``
    (:func:`hier_group_hparams`). Owns the hierarchical proxies ``xi`` (P, D_H) — tangent vectors,
    mapped by :math:`\exp^c_0(\operatorname{clip}_r(\cdot))` with the curvature and clipping radius
    of the loss's head at each call — and the generator of its random draws, which travels with the
    module's state dict (``get_extra_state``). It is the attribute ``hier`` of the loss it joins
    (state-dict keys ``hier.xi``, ``hier._extra_state``) and gives it :meth:`hier_points`."""

    Settings = HIERSettings
    part, weight = "l_hier", "hier_weight"
    attr, group = "hier", "hier"
    exports = ("hier_points",)

    def __init__(self, num_proxies: int, dim: int, *, seed: int = 0, init_radius: float = 2.3) -> None:
        super().__init__()
        if num_proxies < 2 or dim < 1:
            raise ValueError(f"HIER needs >= 2 proxies of dimension >= 1, got P = {num_proxies}, D_H = {dim}")
        radius = init_radius if math.isfinite(init_radius) else 2.3
        g = torch.Generator().manual_seed(seed)
        self.xi = nn.Parameter(torch.randn(num_proxies, dim, generator=g) / math.sqrt(dim) * 0.9 * radius)
        self.generator = torch.Generator().manual_seed(seed + 1)

    @classmethod
    def create(cls, settings: Any, ctx: LossContext) -> "HIERTerm":
        """``hier_proxies`` proxies of the ball's dimension ``ctx.dim_h``, seeded by ``ctx.seed + 101``,
        initialised at the head's clipping radius."""
        return cls(settings.hier_proxies, ctx.dim_h, seed=ctx.seed + 101, init_radius=getattr(ctx.head, "r", 2.3))

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        return hier_rules(cfg)

    def group_hparams(self, cfg: TrainConfig) -> dict[str, float]:
        return hier_group_hparams(cfg)

    def points(self, c: poincare.Curvature, r: float) -> Tensor:
        """The proxies in the ball, (P, D_H), float32."""
        return poincare.expmap0(poincare.clip_features(self.xi.float(), r), c)

    def losses(self, x_h: Tensor, labels: Optional[Tensor], c: poincare.Curvature, r: float, *, margin: float,
               tau: float, topk: int, per_anchor: int) -> tuple[Tensor, Tensor]:
        """:func:`hier_loss` with this term's proxies and generator: ``(L_batch, L_proxies)``."""
        return hier_loss(x_h, labels, self.points(c, r), c, margin=margin, tau=tau, topk=topk, per_anchor=per_anchor,
                         generator=self.generator)

    @staticmethod
    def _geometry(loss: Loss) -> tuple[float, float]:
        head = loss.ctx.head if loss.ctx is not None else None
        if head is None:
            raise RuntimeError(f"{type(loss).__name__} has no head: build it with {type(loss).__name__}.build(settings, ctx)")
        return float(head.c), float(getattr(head, "r", math.inf))

    def forward(self, step: Step, s: Any) -> tuple[Tensor, dict[str, Any]]:
        c, r = self._geometry(step.loss)
        l_batch, l_proxy = self.losses(step.x_h, step.labels, c, r, margin=s.hier_margin, tau=s.hier_tau,
                                       topk=s.hier_topk, per_anchor=s.hier_triplets)
        return l_batch + l_proxy, {}

    def hier_points(self, loss: Loss, x_h: Optional[Tensor] = None) -> dict[str, Tensor]:
        r"""The hierarchical proxies for HIER's Fig. 3, detached, on the CPU (``loss.hier_points(x_h)``):

        - ``"h"``: (P, D_H) the proxies in the ball;
        - ``"proxy_parent"``: (P,) each proxy's parent proxy (nearest among those nearer the origin;
          ``-1`` for the root), see :func:`hier_parents`;
        - with ``x_h`` (N, D_H) samples: ``"x_parent"`` (N,) each sample's nearest proxy (its LCA
          as a group of one).

        The children of proxy ``p`` are the samples with ``x_parent == p`` and the proxies with
        ``proxy_parent == p``."""
        c, r = self._geometry(loss)
        with torch.no_grad():
            h = self.points(c, r).float().cpu()
            return {"h": h, **hier_parents(h, c, None if x_h is None else x_h.detach().float().cpu())}

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


# --------------------------------------------------------------------------------------------
# the registered combinations: a base loss plus the HIER term, by composition
# --------------------------------------------------------------------------------------------
CHESTHIERLoss = register_loss("chest_hier")(CHESTLoss.with_terms(HIERTerm))
PairCEHIERLoss = register_loss("pair_ce_hier")(PairCELoss.with_terms(HIERTerm))
CHESTHIERSettings = CHESTHIERLoss.Settings
PairCEHIERSettings = PairCEHIERLoss.Settings
