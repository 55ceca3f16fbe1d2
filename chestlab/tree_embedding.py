r"""Embedding a known tree directly, without a network: Poincaré embeddings (Nickel & Kiela, 2017).

Every node of a tree -- the root, the inner nodes, the leaves -- gets one free point, in the Poincaré
ball of curvature :math:`-c` or, with ``c = 0``, in Euclidean space, and the points are fitted so that
the tree can be read back from the distances alone. The pieces, one function each:

* **the tree** -- :class:`Tree`: a parent table with the levels and names of the nodes, the tree
  metric :math:`d_T` (edges on the path), the *related* pairs (one node an ancestor of the other:
  the transitive closure that Nickel & Kiela embed) and the edges. :meth:`Tree.complete` builds the
  complete tree of the ``tree`` data set (:func:`chestlab.data.tree.make_tree_world`), e.g.
  branching ``(4, 4, 4, 4)`` (341 nodes, 256 leaves), and :meth:`Tree.from_hierarchy` any
  :class:`chestlab.hierarchy.Hierarchy` (CUB's families, CIFAR-100's coarse classes...).
* **the loss** -- :func:`nk_loss`: Nickel & Kiela's softmax over the negatives of :math:`-d`;
  :func:`distortion_loss`: the squared relative error of the distances (Sala et al., 2018).
* **the optimiser** -- :func:`riemannian_grad` and :func:`rsgd_step`: Riemannian SGD with the
  Poincaré metric's rescaled gradient and a projection back into the ball, as Nickel & Kiela;
  :func:`fit` runs it from their initialisation, with their "burn-in".
* **the evaluation** -- :func:`mean_average_precision` (the graph reconstruction of Nickel & Kiela:
  rank every node by distance and ask that the related ones come first), :func:`distortion`
  (the average and worst-case distortion of Sala et al.), and :func:`dimension_sweep`, which fits
  both spaces at several dimensions with the same method, budget and seeds.

**One method for both spaces.** The distances are :func:`chestlab.poincare.pairwise_dist`, which is
continuous in ``c`` at 0, where it is :math:`2\|x - y\|` and the conformal factor is
:math:`\lambda = 2`: the ball with ``c = 0`` *is* the Euclidean space (of coordinates :math:`2x`), and
the Riemannian SGD step :math:`x \leftarrow x - \eta\nabla_E/\lambda^2` is then plain SGD in those
coordinates with the same :math:`\eta`. So the plane is fitted by the same code as the disk, with
``c = 0``: the same loss, the same update, the same initialisation, steps and seeds.

Sizes are bounded: at most :data:`MAX_NODES` nodes (the losses hold (n, n) matrices) and
:data:`MAX_DIM` dimensions.

References: M. Nickel, D. Kiela, *Poincaré Embeddings for Learning Hierarchical Representations*,
NeurIPS 2017 (the loss, Riemannian SGD, the reconstruction MAP); F. Sala, C. De Sa, A. Gu, C. Ré,
*Representation Tradeoffs for Hyperbolic Embeddings*, ICML 2018 (distortion); R. Sarkar, *Low
Distortion Delaunay Embedding of Trees in Hyperbolic Plane*, 2011.

Example
-------
>>> from chestlab import tree_embedding as te
>>> tree = te.Tree.complete((3, 3))
>>> res = te.fit(tree, dim=2, c=1.0, steps=300, seed=0)
>>> te.mean_average_precision(te.pairwise(res.x, 1.0), tree.related()) > 0.9
True
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import poincare

__all__ = [
    "MAX_NODES",
    "MAX_DIM",
    "MAX_STEPS",
    "LOSSES",
    "Tree",
    "sarkar",
    "pairwise",
    "nk_loss",
    "nk_loss_grad",
    "distortion_loss",
    "distortion_loss_grad",
    "riemannian_grad",
    "rsgd_step",
    "TreeFit",
    "fit",
    "mean_average_precision",
    "distortion",
    "dimension_sweep",
]

#: Most nodes a tree may have here: the losses and metrics hold (n, n) float64 matrices.
MAX_NODES = 4096
#: Most dimensions of an embedding.
MAX_DIM = 1024
#: Most optimisation steps of one :func:`fit`.
MAX_STEPS = 100_000
#: The losses :func:`fit` knows.
LOSSES = ("nk", "distortion")


# --------------------------------------------------------------------------------------------
# the tree
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    """A rooted tree of ``n`` nodes, numbered level by level (the root is node 0, a parent comes
    before its children).

    Attributes:
        parent: ``(n,)`` int64, the parent of every node (``-1`` for the root).
        level: ``(n,)`` int64, the number of edges from the root (0 for the root).
        names: ``n`` node names (``"root"`` first).
    """

    parent: Tensor
    level: Tensor
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.parent)
        if not 2 <= n <= MAX_NODES:
            raise ValueError(f"a tree here needs 2..{MAX_NODES} nodes (the losses hold (n, n) matrices), got {n}")
        if self.level.shape != (n,) or len(self.names) != n:
            raise ValueError(f"parent, level and names must all have n = {n} entries")
        p = self.parent.tolist()
        if p[0] != -1 or any(not 0 <= q < v for v, q in enumerate(p) if v > 0):
            raise ValueError("parent must be -1 for node 0 (the root) and point to an earlier node for every other node")

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.parent)

    @property
    def depth(self) -> int:
        """Number of levels below the root."""
        return int(self.level.max())

    @classmethod
    def from_hierarchy(cls, hierarchy: Any) -> "Tree":
        """The tree of a :class:`chestlab.hierarchy.Hierarchy`: the root, one node per distinct path
        prefix (each ancestor) and the classes as leaves, level by level in order of first appearance.
        A node is named by the last name on its path."""
        prefixes: dict[tuple[str, ...], int] = {(): 0}
        by_level: list[list[tuple[str, ...]]] = [[()]]
        for path in hierarchy.paths:
            for k in range(1, len(path) + 1):
                q = tuple(path[:k])
                if q not in prefixes:
                    prefixes[q] = -1
                    while len(by_level) <= k:
                        by_level.append([])
                    by_level[k].append(q)
        order = [q for level in by_level for q in level]
        if len(order) > MAX_NODES:
            raise ValueError(f"the hierarchy has {len(order)} nodes with the root; at most {MAX_NODES} can be embedded here")
        index = {q: i for i, q in enumerate(order)}
        parent = torch.tensor([-1] + [index[q[:-1]] for q in order[1:]], dtype=torch.long)
        level = torch.tensor([len(q) for q in order], dtype=torch.long)
        return cls(parent, level, ("root",) + tuple(q[-1] for q in order[1:]))

    @classmethod
    def complete(cls, branching: Sequence[int]) -> "Tree":
        """The complete tree of the ``tree`` data set (:func:`chestlab.data.tree.make_tree_world`) with
        ``branching[l]`` children per node at level ``l``, its nodes named as there (``"branch C"``, ``"C.0.3"``):
        ``(4, 4, 4)`` has 85 nodes and 64 leaves, ``(4, 4, 4, 4)`` (the preset ``demo-tree-wide``)
        341 nodes and 256 leaves."""
        from .data.tree import make_tree_world  # lazy: the data package pulls in the readers
        from .hierarchy import Hierarchy

        b = tuple(branching)
        if not b or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 2 for v in b):
            raise ValueError(f"branching must be a non-empty sequence of ints >= 2, got {branching!r}")
        n = sum(math.prod(b[:k]) for k in range(len(b) + 1))
        if n > MAX_NODES:
            raise ValueError(f"branching {b} gives {n} nodes; at most {MAX_NODES} can be embedded here")
        world = make_tree_world(0, tuple(int(v) for v in b), samples_per_class=1)
        names = world.node_names
        anc = world.ancestors.tolist()
        return cls.from_hierarchy(Hierarchy([names[a[-1]] for a in anc], [[names[i] for i in a[:-1]] for a in anc]))

    def ancestors(self) -> Tensor:
        """``(n, n)`` bool: ``[a, v]`` is True when ``a`` is ``v`` or one of its ancestors."""
        A = torch.eye(self.n, dtype=torch.bool)
        for v, p in enumerate(self.parent.tolist()):
            if p >= 0:
                A[:, v] |= A[:, p]  # parents come first, so column p is complete
        return A

    def tree_distances(self) -> Tensor:
        r"""``(n, n)`` float64, the tree metric: the number of edges on the path from ``u`` to ``v``,

        .. math:: d_T(u, v) = \ell_u + \ell_v - 2\,\ell_{\mathrm{lca}(u, v)},

        with :math:`\ell` the level; :math:`\ell_{\mathrm{lca}} + 1` is the number of common ancestors (the
        nodes themselves included)."""
        A = self.ancestors().double()
        lev = self.level.double()
        return lev[:, None] + lev[None, :] - 2 * (A.T @ A - 1)

    def related(self) -> Tensor:
        """``(n, n)`` bool, the transitive closure taken both ways: ``[u, v]`` is True when one of
        ``u``, ``v`` is a proper ancestor of the other (what Nickel & Kiela embed and reconstruct)."""
        A = self.ancestors()
        return (A | A.T) & ~torch.eye(self.n, dtype=torch.bool)

    def edges(self) -> Tensor:
        """``(n, n)`` bool, the adjacency matrix: ``[u, v]`` is True when one is the other's parent."""
        E = torch.zeros(self.n, self.n, dtype=torch.bool)
        child = torch.arange(1, self.n)
        E[child, self.parent[1:]] = True
        return E | E.T


def sarkar(tree: Tree, tau: float, c: float = 1.0) -> Tensor:
    r"""Sarkar's construction (Sarkar 2011; the combinatorial embedding of Sala et al. 2018): the tree in
    the Poincaré disk with every edge of hyperbolic length ``tau``, no optimisation.

    The root sits at the origin and its children on the circle :math:`d_H(0, \cdot) = \tau`, equally
    spaced. Every other node :math:`v` is moved to the origin by the isometry :math:`y\mapsto(-v)\oplus y`,
    where its parent lands at :math:`u = (-v)\oplus p`; its :math:`k` children go on the circle of radius
    :math:`\tau` at the angles that split the full turn into :math:`k + 1` equal parts starting from the
    direction of :math:`u`, and everything moves back with :math:`y\mapsto v\oplus y`. Siblings thus
    leave in directions as far apart as possible; large ``tau`` gives a distortion near 1.
    Returns (n, 2) float64 points of the disk of curvature ``-c``.
    """
    tau = _check_real(tau, "tau", 0.0, 1e3, lo_open=True)
    c = float(poincare.check_curvature(c))
    if c <= 0:
        raise ValueError(f"c = {c!r}: Sarkar's construction needs the hyperbolic disk, c > 0")
    X = torch.zeros(tree.n, 2, dtype=torch.float64)
    children: list[list[int]] = [[] for _ in range(tree.n)]
    for v, p in enumerate(tree.parent.tolist()):
        if p >= 0:
            children[p].append(v)
    R = math.tanh(math.sqrt(c) * tau / 2) / math.sqrt(c)  # Euclidean radius of the circle d_H(0, .) = tau
    for v, kids in enumerate(children):  # a parent is placed before its children
        if not kids:
            continue
        if v == 0:
            start, slots, first = 0.0, len(kids), 0
        else:
            u = poincare.mobius_add(-X[v], X[tree.parent[v]], c)  # the parent, seen from v moved to the origin
            start, slots, first = math.atan2(float(u[1]), float(u[0])), len(kids) + 1, 1
        a = start + 2 * math.pi * torch.arange(first, first + len(kids), dtype=torch.float64) / slots
        X[kids] = poincare.mobius_add(X[v].expand(len(kids), 2), R * torch.stack([a.cos(), a.sin()], -1), c)
    return X


# --------------------------------------------------------------------------------------------
# distances and losses
# --------------------------------------------------------------------------------------------
def pairwise(x: Tensor, c: float) -> Tensor:
    r"""All distances between the rows of ``x`` (n, D) -> (n, n): the Poincaré distance (Eq. 2,
    :func:`chestlab.poincare.pairwise_dist`) for ``c > 0``; for ``c = 0`` its limit
    :math:`2\|x_u - x_v\|`, the Euclidean distance in the coordinates :math:`2x` (computed as
    ``2 * poincare.pairwise_euclidean(x, x)``, the same values by the kit's faster route)."""
    if float(poincare.check_curvature(c)) == 0:
        return 2 * poincare.pairwise_euclidean(x, x)
    return poincare.pairwise_dist(x, x, c)


def _check_square(M: Tensor, n: int, name: str) -> None:
    if not isinstance(M, Tensor) or M.shape != (n, n):
        raise ValueError(f"{name} must be an (n, n) = ({n}, {n}) tensor, got {getattr(M, 'shape', type(M).__name__)}")


def _nk_pairs(related: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The related pairs ``(u, v)`` of ``related`` (n, n) and the mask of the negatives (n, n)."""
    n = related.shape[0]
    _check_square(related, n, "related")
    if not bool(related.any()):
        raise ValueError("related holds no pair: the loss needs at least one related pair (u, v)")
    related = related.bool()
    u, v = related.nonzero(as_tuple=True)
    return u, v, ~related & ~torch.eye(n, dtype=torch.bool, device=related.device)


def _nk_lse(D: Tensor, negative: Tensor) -> Tensor:
    """Per node, the log-sum-exp of ``-d`` over its negatives (n,) (``-inf`` without negatives)."""
    _check_square(D, negative.shape[0], "D")
    return torch.logsumexp((-D).masked_fill(~negative, -math.inf), dim=1)


def nk_loss(D: Tensor, related: Tensor) -> Tensor:
    r"""Nickel & Kiela's loss (their Eq. 6), over all related pairs and with *all* negatives:

    .. math:: L = -\sum_{(u, v)\in P}\log\frac{e^{-d(u, v)}}{e^{-d(u, v)} + \sum_{v'\in N(u)} e^{-d(u, v')}}
              = \sum_{(u, v)\in P}\operatorname{softplus}\big(d(u, v) + \ell_u\big),
              \qquad \ell_u = \log\sum_{v'\in N(u)} e^{-d(u, v')},

    with :math:`P` the ordered related pairs (``related``, the closure both ways) and :math:`N(u)` the
    nodes not related to :math:`u` (nor :math:`u` itself). A node related to all others (the root) has
    no negatives (:math:`\ell_u = -\infty`) and its terms vanish. A sum, as theirs (divide by
    :math:`|P|` for the mean per pair). Nickel & Kiela sample 10-50 negatives per pair; a tree of a few
    hundred nodes affords all of them, so the loss here is exact and deterministic.
    ``D``: (n, n) distances (:func:`pairwise`), ``related``: (n, n) bool -> a scalar.
    """
    u, v, negative = _nk_pairs(related)
    return F.softplus(D[u, v] + _nk_lse(D, negative)[u]).sum()


def nk_loss_grad(D: Tensor, related: Tensor) -> Tensor:
    r"""The gradient of :func:`nk_loss` with respect to the distances, :math:`G = \partial L/\partial D`
    (n, n): with :math:`s_{uv} = \sigma(d(u, v) + \ell_u)` for a related pair and the softmax
    :math:`p_{uw} = e^{-d(u, w) - \ell_u}` over the negatives :math:`N(u)`,

    .. math:: G_{uv} = s_{uv}\ \ (v \text{ related to } u), \qquad
              G_{uw} = -p_{uw}\sum_{v} s_{uv}\ \ (w\in N(u)), \qquad 0 \text{ elsewhere}:

    every related pair pulls its two nodes together, and pushes :math:`u` away from its negatives in
    proportion to how close they are (the softmax). :func:`fit` passes it to the backward pass of
    :func:`pairwise` (the chain rule to the points) instead of differentiating the loss by autograd.
    """
    return _nk_value_and_grad(D, _nk_pairs(related))[1]


def _nk_value_and_grad(D: Tensor, pairs: tuple[Tensor, Tensor, Tensor]) -> tuple[float, Tensor]:
    """:func:`nk_loss` and :func:`nk_loss_grad` from one pass over the distances (no autograd), for
    the ``pairs`` of :func:`_nk_pairs` (computed once per fit)."""
    with torch.no_grad():
        u, v, negative = pairs
        D = D.detach()
        lse = _nk_lse(D, negative)
        z = D[u, v] + lse[u]
        G = torch.zeros_like(D)
        s = torch.sigmoid(z)
        G[u, v] = s
        pull = torch.zeros(D.shape[0], dtype=D.dtype, device=D.device).index_add_(0, u, s)  # sum_v s_uv
        p = torch.exp(-D - lse[:, None]).masked_fill_(~negative, 0)  # rows without negatives: lse = -inf
        return float(F.softplus(z).sum()), G.sub_(p.nan_to_num_(0.0).mul_(pull[:, None]))


def _distortion_pairs(D: Tensor, d_T: Tensor) -> tuple[Tensor, Tensor]:
    n = D.shape[0]
    _check_square(D, n, "D")
    _check_square(d_T, n, "d_T")
    iu = torch.triu_indices(n, n, 1, device=D.device)
    dt = d_T[iu[0], iu[1]].to(D.dtype)
    if not bool((dt > 0).all()):
        raise ValueError("d_T must be > 0 off the diagonal (distinct nodes are at distance >= 1)")
    return iu, dt


def distortion_loss(D: Tensor, d_T: Tensor) -> Tensor:
    r"""The squared relative error of the distances, over all pairs :math:`u < v`:

    .. math:: L = \sum_{u<v}\Big(\frac{d(u, v)}{d_T(u, v)} - 1\Big)^2,

    a smooth stand-in for the average distortion (Sala et al., 2018) that, unlike :func:`nk_loss`,
    fixes the scale: the fitted distances aim at :math:`d_T` itself. A sum, as :func:`nk_loss` (a
    learning rate is a step per pair), but every node takes part in :math:`n - 1` pairs here, so it
    needs a rate about :math:`n` times smaller. ``D``, ``d_T``: (n, n) -> a scalar.
    """
    iu, dt = _distortion_pairs(D, d_T)
    return (D[iu[0], iu[1]] / dt - 1).square().sum()


def distortion_loss_grad(D: Tensor, d_T: Tensor) -> Tensor:
    r"""The gradient of :func:`distortion_loss` with respect to the distances (n, n):
    :math:`G_{uv} = 2\big(\frac{d(u, v)}{d_T(u, v)} - 1\big)\frac{1}{d_T(u, v)}` for
    :math:`u < v`, 0 on and below the diagonal."""
    with torch.no_grad():
        iu, dt = _distortion_pairs(D, d_T)
        G = torch.zeros_like(D)
        G[iu[0], iu[1]] = 2 * (D[iu[0], iu[1]] / dt - 1) / dt
        return G


def _distortion_value_and_grad(D: Tensor, d_T: Tensor) -> tuple[float, Tensor]:
    return float(distortion_loss(D.detach(), d_T)), distortion_loss_grad(D, d_T)


# --------------------------------------------------------------------------------------------
# Riemannian SGD
# --------------------------------------------------------------------------------------------
def riemannian_grad(x: Tensor, egrad: Tensor, c: float) -> Tensor:
    r"""The Riemannian gradient of a function on the ball from its Euclidean gradient (Nickel & Kiela,
    Eq. 4): the metric is :math:`g_x = \lambda_x^2 I` with :math:`\lambda_x = 2/(1 - c\|x\|^2)`, so

    .. math:: \nabla_R = \lambda_x^{-2}\,\nabla_E = \frac{(1 - c\|x\|^2)^2}{4}\,\nabla_E,

    the vector with :math:`g_x(\nabla_R, w) = \langle\nabla_E, w\rangle` for every tangent vector
    :math:`w`. At ``c = 0``: :math:`\nabla_E / 4` (the metric :math:`4I` of :math:`2\|x - y\|`).
    ``x``, ``egrad``: (..., D) -> (..., D).
    """
    return egrad * (poincare.alpha(x, c).unsqueeze(-1) ** 2 / 4)


def rsgd_step(x: Tensor, egrad: Tensor, lr: float, c: float, eps: Optional[float] = None) -> Tensor:
    r"""One Riemannian SGD step with Nickel & Kiela's retraction (their Eq. 5):

    .. math:: x \leftarrow \operatorname{proj}\big(x - \eta\,\nabla_R\big),
              \qquad \nabla_R = \frac{(1 - c\|x\|^2)^2}{4}\,\nabla_E,

    the first-order step along the Riemannian gradient, pulled back to the norm
    :math:`(1 - \epsilon)/\sqrt c` (:func:`chestlab.poincare.project`; ``eps`` :math:`\epsilon`, default
    ``BALL_EPS``) when it overshoots; geoopt's ``RiemannianSGD`` on its ``PoincareBall`` takes the same
    step. At ``c = 0`` it is :math:`x - \eta\nabla_E/4`: plain SGD in the coordinates :math:`2x`.
    ``x``, ``egrad``: (n, D) -> (n, D).
    """
    return poincare.project(x - lr * riemannian_grad(x, egrad, c), c, eps)


@dataclass
class TreeFit:
    """The result of :func:`fit`.

    Attributes:
        x: ``(n, D)`` float64, the fitted points (in the ball for ``c > 0``).
        c: the curvature parameter (0: Euclidean).
        losses: ``(steps,)`` float64, the loss before each step.
        seconds: wall-clock time of the fit.
    """

    x: Tensor
    c: float
    losses: np.ndarray
    seconds: float


def _check_int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise ValueError(f"{name} = {value!r}: must be an int in {lo}..{hi}")
    return int(value)


def _check_real(value: object, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if not ok or not (lo < float(value) if lo_open else lo <= float(value)) or not float(value) <= hi:
        raise ValueError(f"{name} = {value!r}: must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(value)


def fit(tree: Tree, dim: int, c: float, *, steps: int = 500, lr: float = 0.03, loss: str = "nk",
        burn_in: float = 0.1, init_scale: float = 1e-3, eps: float = 1e-5, seed: int = 0) -> TreeFit:
    r"""Fit one point per node of ``tree`` in ``dim`` dimensions by full-batch Riemannian SGD
    (:func:`rsgd_step`) on ``loss`` -- ``"nk"`` (:func:`nk_loss`) or ``"distortion"``
    (:func:`distortion_loss`) -- in the ball of curvature :math:`-c`, or in Euclidean space for
    ``c = 0`` (the same method: see the module docstring).

    As Nickel & Kiela: the points start uniform in :math:`[-\epsilon, \epsilon]^D` (``init_scale``
    :math:`\epsilon = 10^{-3}`: all near the origin), and the first ``burn_in`` fraction of the steps
    uses :math:`\eta/10`, to find a good angular layout before the points move outwards; a step that
    overshoots the ball is pulled back to the norm :math:`(1 - \epsilon)/\sqrt c` with their
    :math:`\epsilon` = ``eps`` = :math:`10^{-5}` (at most :math:`2\operatorname{artanh}(1 - 10^{-5})/\sqrt c
    \approx 12.2/\sqrt c` from the origin: a point pushed much closer to the boundary, where float64
    resolves the norm only to a few digits, could no longer move). Float64.

    ``steps`` in 1..:data:`MAX_STEPS`, ``dim`` in 1..:data:`MAX_DIM`, ``lr`` > 0, ``burn_in`` in [0, 1],
    ``eps`` in (0, 0.5], ``c`` >= 0. Raises ``FloatingPointError`` if the loss stops being finite.
    """
    if not isinstance(tree, Tree):
        raise TypeError(f"tree must be a Tree (Tree.complete, Tree.from_hierarchy), got {type(tree).__name__}")
    dim = _check_int(dim, "dim", 1, MAX_DIM)
    steps = _check_int(steps, "steps", 1, MAX_STEPS)
    lr = _check_real(lr, "lr", 0.0, 1e6, lo_open=True)
    burn_in = _check_real(burn_in, "burn_in", 0.0, 1.0)
    init_scale = _check_real(init_scale, "init_scale", 0.0, 1e3, lo_open=True)
    eps = _check_real(eps, "eps", 0.0, 0.5, lo_open=True)
    c = float(poincare.check_curvature(c))
    if c > 0 and init_scale * math.sqrt(dim * c) >= 1:
        raise ValueError(f"init_scale = {init_scale:g}: the start cube must lie inside the ball (init_scale * sqrt(dim * c) < 1)")
    if loss not in LOSSES:
        raise ValueError(f"loss = {loss!r}: choose one of {LOSSES}")
    g = torch.Generator().manual_seed(int(seed))
    x = (2 * torch.rand(tree.n, dim, generator=g, dtype=torch.float64) - 1) * init_scale
    target = _nk_pairs(tree.related()) if loss == "nk" else tree.tree_distances()
    value_and_grad = _nk_value_and_grad if loss == "nk" else _distortion_value_and_grad
    history = np.empty(steps)
    t0 = time.perf_counter()
    with poincare.checks(False):  # the points stay in the ball by construction (rsgd_step projects)
        for step in range(steps):
            x.requires_grad_(True)
            D = pairwise(x, c)
            # the loss's gradient in closed form, then the chain rule through the distances
            history[step], G = value_and_grad(D.detach(), target)
            (egrad,) = torch.autograd.grad(D, x, G)
            if not math.isfinite(history[step]):
                raise FloatingPointError(f"the loss is {history[step]} at step {step} (lr = {lr:g} may be too large)")
            with torch.no_grad():
                x = rsgd_step(x.detach(), egrad, lr / 10 if step < burn_in * steps else lr, c, eps)
    return TreeFit(x.detach(), c, history, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def mean_average_precision(D: Tensor, related: Tensor) -> float:
    r"""The mean average precision of the graph reconstruction (Nickel & Kiela, Sec. 4.1; Sala et al.,
    Sec. 6): every node :math:`u` ranks all other nodes by distance, and for each node :math:`v`
    related to :math:`u`

    .. math:: \mathrm{AP}(u) = \frac{1}{|R_u|}\sum_{v\in R_u}
              \frac{|\{w\in R_u : d(u, w)\le d(u, v)\}|}{|\{w\ne u : d(u, w)\le d(u, v)\}|},

    the precision within the smallest ball around :math:`u` that holds :math:`v` (ties count against,
    as scikit-learn's ``average_precision_score``). MAP is the mean over the nodes that have at least
    one related and one unrelated node (for the others every order is perfect). ``related`` is the
    closure (:meth:`Tree.related`, Nickel & Kiela) or the edges (:meth:`Tree.edges`, Sala et al.).
    ``D``: (n, n) distances, ``related``: (n, n) bool -> a float in [0, 1].
    """
    n = D.shape[0]
    _check_square(D, n, "D")
    _check_square(related, n, "related")
    D = D.detach().double().clone().fill_diagonal_(math.inf)  # u is not its own neighbour
    rel = related.bool() & ~torch.eye(n, dtype=torch.bool, device=related.device)
    d_sorted, order = D.sort(dim=1)
    hits = rel.gather(1, order).double().cumsum(1)  # related nodes among the k nearest
    within = torch.searchsorted(d_sorted, D, right=True)  # |{w != u : d(u, w) <= d(u, v)}|
    precision = hits.gather(1, (within - 1).clamp_min(0)) / within.clamp_min(1)
    n_rel = rel.sum(1)
    valid = (n_rel > 0) & (n_rel < n - 1)
    if not bool(valid.any()):
        raise ValueError("no node has both related and unrelated nodes: the reconstruction has nothing to rank")
    ap = (precision * rel).sum(1)[valid] / n_rel[valid]
    return float(ap.mean())


def distortion(D: Tensor, d_T: Tensor) -> tuple[float, float]:
    r"""The distortion of an embedding of a metric :math:`d_T` (Sala et al., 2018), over the pairs
    :math:`u < v`, with :math:`q_{uv} = d(u, v)/d_T(u, v)`:

    * the **average distortion** after the best rescaling :math:`s` of the embedding,
      :math:`\min_s\operatorname{mean}_{u<v}|s\,q_{uv} - 1|` (0 is perfect): a loss such as
      :func:`nk_loss` fixes only the order of the distances, not their unit. The minimiser is the
      weighted median of :math:`1/q_{uv}` with weights :math:`q_{uv}`;
    * the **worst-case distortion** :math:`\max q / \min q` (1 is perfect; scale-free).

    ``D``, ``d_T``: (n, n) -> ``(average, worst)``.
    """
    n = D.shape[0]
    _check_square(D, n, "D")
    _check_square(d_T, n, "d_T")
    iu = torch.triu_indices(n, n, 1)
    q = (D.detach().double()[iu[0], iu[1]] / d_T.double()[iu[0], iu[1]]).numpy()
    if not np.all(np.isfinite(q)) or np.any(q <= 0):
        return math.inf, math.inf  # coincident points: infinitely distorted
    inv = 1 / q
    order = np.argsort(inv)
    cum = np.cumsum(q[order])
    s = inv[order][np.searchsorted(cum, cum[-1] / 2)]  # the weighted median
    return float(np.mean(np.abs(s * q - 1))), float(q.max() / q.min())


def dimension_sweep(tree: Tree, dims: Sequence[int], seeds: Sequence[int], *, c: float = 1.0,
                    lrs: Sequence[float] = (0.03, 0.1, 0.3), **fit_options: Any):
    """Fit ``tree`` in the ball of curvature ``-c`` ("disk") and in Euclidean space ("plane", ``c = 0``)
    at every dimension of ``dims`` and every seed of ``seeds`` by the same :func:`fit` (loss, steps,
    burn-in: ``fit_options``) from the same initial points, and score each fit.

    The learning rate is chosen the same way in both spaces: for each space and dimension, the rate of
    ``lrs`` whose fit of the first seed ends with the lowest loss (the training objective: the
    reconstruction has no held-out data), then used for every seed. The spaces need different rates --
    the plane's distances keep growing under the loss, the disk's are capped by the boundary -- so
    one common rate would favour one of them.

    Returns a pandas DataFrame with one row per fit: ``space``, ``D``, ``seed``, ``lr``, ``MAP``
    (:func:`mean_average_precision` on the closure), ``MAP (edges)``, ``distortion`` (average),
    ``worst`` (worst-case), ``loss`` (the last one) and ``seconds``. Pair the spaces by ``(D, seed)``.
    """
    import pandas as pd

    if not seeds or not lrs:
        raise ValueError("dimension_sweep needs at least one seed and one learning rate")
    related, edges, d_T = tree.related(), tree.edges(), tree.tree_distances()
    rows = []
    for dim in dims:
        for space, cc in (("disk", c), ("plane", 0.0)):
            tries = {lr: fit(tree, dim, cc, lr=lr, seed=seeds[0], **fit_options) for lr in lrs}
            lr = min(tries, key=lambda k: tries[k].losses[-1])
            for seed in seeds:
                res = tries[lr] if seed == seeds[0] else fit(tree, dim, cc, lr=lr, seed=seed, **fit_options)
                D = pairwise(res.x, cc)
                avg, worst = distortion(D, d_T)
                rows.append({"space": space, "D": int(dim), "seed": int(seed), "lr": lr,
                             "MAP": mean_average_precision(D, related), "MAP (edges)": mean_average_precision(D, edges),
                             "distortion": avg, "worst": worst, "loss": float(res.losses[-1]), "seconds": res.seconds})
    return pd.DataFrame(rows)
