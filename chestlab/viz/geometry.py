r"""What a Poincaré-disk figure draws, computed once for every drawing backend.

Every function returns plain numpy arrays: a point set is ``(n, 2)``, a polyline is an ``(n, 2)``
array of consecutive vertices, a drawing layer is a list of polylines. The backends
(:mod:`chestlab.viz.plotly`, :mod:`chestlab.viz.mpl`) only draw them. Distances, exp/log maps and
curvature conventions are :mod:`chestlab.poincare`'s: the disk of curvature ``-c`` is
:math:`\{x : c\|x\|^2 < 1\}`, ``c = 0`` is the Euclidean plane (where :math:`D = 2\|x - y\|`).
Computations run in float64 torch.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .. import poincare

__all__ = [
    "as_numpy",
    "disk_radius",
    "euclid_radius",
    "view_limit",
    "boundary_circle",
    "geodesic_grid",
    "circle_label_points",
    "circle_label_plan",
    "circle_note",
    "hyperbolic_circle",
    "geodesic_arc",
    "geodesic_arcs",
    "project_to_disk",
    "projection_label",
    "umap_disk",
    "hyperboloid_to_disk",
    "proxy_points",
]


def as_numpy(x: Any) -> Optional[np.ndarray]:
    """A tensor (detached, on the CPU), array or sequence as a numpy array; ``None`` stays ``None``."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _f64(x: Any) -> torch.Tensor:
    return torch.as_tensor(as_numpy(x), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------
# radii
# ------------------------------------------------------------------------------------------------
def disk_radius(c: float) -> float:
    r"""Euclidean radius of the Poincaré disk of curvature ``-c``.

    .. math::

        R = \frac{1}{\sqrt{c}} \qquad (R = \infty \text{ at } c = 0\text{, the Euclidean plane})
    """
    return math.inf if c <= 0 else 1.0 / math.sqrt(c)


def euclid_radius(d: float, c: float) -> float:
    r"""Euclidean norm of the points at Poincaré distance ``d`` from the origin.

    .. math::

        r = \frac{\tanh(\sqrt{c}\, d / 2)}{\sqrt{c}} \qquad (r = d / 2 \text{ at } c = 0)

    the inverse of :math:`D(0, x) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)`.
    """
    return d / 2 if c <= 0 else math.tanh(math.sqrt(c) * d / 2) / math.sqrt(c)


def view_limit(c: float, points: Any = None, *, margin: float = 0.03, extent: float = 1.0) -> float:
    r"""Half-width ``L`` of the square view ``[-L, L]^2`` of a disk figure.

    :math:`L = (1 + \text{margin}) R` when the disk is finite; at ``c = 0`` (no boundary)
    :math:`L = 1.05 \max|x_{ij}|` over ``points`` (..., 2), or :math:`(1 + \text{margin})\,\text{extent}`
    without points.
    """
    R = disk_radius(c)
    if math.isfinite(R):
        return (1 + margin) * R
    p = as_numpy(points)
    if p is not None and p.size:
        return 1.05 * float(np.abs(p).max()) or 1.0
    return (1 + margin) * extent


# ------------------------------------------------------------------------------------------------
# polylines
# ------------------------------------------------------------------------------------------------
def boundary_circle(c: float, n: int = 256) -> np.ndarray:
    r"""The boundary of the disk, :math:`\{R(\cos\theta, \sin\theta)\}`, :math:`R = 1/\sqrt c`, as a
    closed polyline (n, 2) (first vertex = last). Raises ``ValueError`` at ``c = 0`` (no boundary)."""
    R = disk_radius(c)
    if not math.isfinite(R):
        raise ValueError("the Euclidean plane (c = 0) has no boundary circle")
    th = np.linspace(0.0, 2 * math.pi, n)
    return R * np.stack([np.cos(th), np.sin(th)], -1)


def geodesic_grid(c: float, n_diameters: int = 6, dists: Sequence[float] = (1.0, 2.0, 3.0),
                  n: int = 48) -> list[np.ndarray]:
    r"""A geodesic grid: ``n_diameters`` diameters, and across each of them the geodesics that cross it
    at right angles at Poincaré distance ``d`` from 0 (on both sides), for each ``d`` in ``dists``.

    Diameter ``k``: the segment :math:`[-R u_k, R u_k]`, :math:`u_k = (\cos\theta_k, \sin\theta_k)`,
    :math:`\theta_k = \pi k / n_{\text{diameters}}`. The geodesic crossing it at Euclidean radius
    :math:`a` (= :func:`euclid_radius` of ``d``) is the arc, inside the disk, of the circle of centre
    :math:`x_0 u_k` and radius :math:`\rho`,

    .. math::

        x_0 = \frac{R^2 + a^2}{2a}, \qquad \rho = x_0 - a, \qquad |\varphi - \pi| \le \arctan(R / \rho)

    (it meets the boundary at right angles: :math:`x_0^2 = R^2 + \rho^2`), sampled at ``n`` angles.
    At ``c = 0`` the diameters and their perpendiculars are straight segments of half-length
    :math:`1.5\max(a_{\max}, 1)`.

    Returns a list of polylines: diameters (2, 2), arcs (n, 2) ending on the boundary.
    """
    R = disk_radius(c)
    finite = math.isfinite(R)
    span = R if finite else 1.5 * max(euclid_radius(max(dists, default=0.0), c), 1.0)
    lines = []
    for k in range(n_diameters):
        th = math.pi * k / n_diameters
        u = np.array([math.cos(th), math.sin(th)])
        perp = np.array([-u[1], u[0]])
        rot = np.stack([u, perp], -1)  # maps (1, 0) to u
        lines.append(np.outer([-span, span], u))
        for d in dists:
            a = euclid_radius(float(d), c)
            for sgn in (1, -1):
                if not finite:
                    lines.append(sgn * a * u + np.outer([-span, span], perp))
                    continue
                x0 = (R * R + a * a) / (2 * a)
                rho = x0 - a
                half = math.atan2(R, rho)
                phi = np.linspace(math.pi - half, math.pi + half, n)
                arc = np.stack([x0 + rho * np.cos(phi), rho * np.sin(phi)], -1)  # about the x-axis
                lines.append(sgn * arc @ rot.T)
    return lines


def circle_label_points(c: float, circles: Sequence[float], n_diameters: int = 6, *,
                        label_angle: Optional[float] = None, avoid: Any = None,
                        compact: bool = False) -> list[tuple[float, float]]:
    r"""Where the labels of the distance circles go: one point on each circle (in the order of
    ``circles``), away from the diameters of the :func:`geodesic_grid` with ``n_diameters``.

    The diameters sit at the angles :math:`\pi k / n`, so the labels go half-way between two of them,
    at :math:`\pi (k + \tfrac12) / n`: the first circle (in order of size) at the largest such angle
    up to 90° (75° for ``n = 6``), each next one a sector further clockwise (45°, 15°, -15°, ...),
    so that the labels of neighbouring circles, which crowd near the boundary, do not overlap.
    (The grid's arcs do cross every circle, so the backends draw the labels on a white box.)
    ``label_angle`` (degrees): the first label's angle instead, e.g. where a figure's data leave room.
    ``avoid``: points (N, 2) the labels should not cover (a figure's data): each label then takes,
    among the same angles half-way between diameters (tried in the order above), the first one with
    the fewest of these points and earlier labels near it. ``compact``: the labels are large for the
    disk (:func:`circle_label_plan`).
    """
    return [p for p, _, _ in _place_labels(c, circles, n_diameters, label_angle=label_angle, avoid=avoid,
                                           compact=compact)]


def circle_label_plan(c: float, circles: Sequence[float], n_diameters: int = 6, *, label_angle: Optional[float] = None,
                      avoid: Any = None, tolerate: Optional[int] = None,
                      compact: bool = False) -> list[Optional[tuple[float, float]]]:
    """:func:`circle_label_points`, with None for each label that has no place clear of the others and
    of the data: every candidate spot overlaps an earlier label, or covers more than ``tolerate`` of the
    ``avoid`` points (default 2). Two labels overlap when their centres are closer than 0.36 R across and
    0.18 R up or down (a label on a disk a few inches across: the lessons' static figures); ``compact``
    (a disk ~185 px across, the dashboard's compare columns: its plotly figures): when their boxes, the
    size the data footprint assumes (2 × 0.135 R high, twice that wide), come closer than
    :data:`TOUCH_GAP` of a half-height -- labels that merely touch count as overlapping. Near ``c = 0``
    the circles ``d_H = 1, 2, 3`` are a few pixels apart in the middle of a large view, inside the data:
    their labels on the circles would hide the points and each other, so the figures name such circles
    once in a corner instead (:func:`circle_note`). A label sent there does not keep the later ones from
    its spot. Without ``avoid`` (no data) every label keeps its fixed spot, as in
    :func:`circle_label_points`."""
    limit = 2 if tolerate is None else int(tolerate)
    placed = _place_labels(c, circles, n_diameters, label_angle=label_angle, avoid=avoid,
                           tolerate=None if avoid is None else limit, compact=compact)
    if avoid is None:
        return [p for p, _, _ in placed]
    return [None if hits_label or hits_data > limit else p for p, hits_data, hits_label in placed]


def circle_note(circles: Sequence[float], plan: Sequence[Optional[tuple[float, float]]]) -> list[float]:
    """The distances of the circles :func:`circle_label_plan` left unlabelled (named in a corner note)."""
    return [float(d) for d, p in zip(circles, plan) if p is None]


#: the room kept between two circle labels, as a fraction of a label's half-height (labels that merely touch
#: read as one: "d_H = 3d_H = 2")
TOUCH_GAP = 0.15


def _place_labels(c: float, circles: Sequence[float], n_diameters: int = 6, *, label_angle: Optional[float] = None,
                  avoid: Any = None, size: float = 0.135,
                  tolerate: Optional[int] = None, compact: bool = False) -> list[tuple[tuple[float, float], int, bool]]:
    """(spot, data points it covers, whether it overlaps an earlier label) for each circle's label: the
    search of :func:`circle_label_points`; ``size``: a label's half-height over the disk's radius, for
    the points it covers; ``tolerate`` (:func:`circle_label_plan`'s): an earlier label that covers more
    points than that, or overlaps another, goes to the corner note and does not keep later ones away;
    ``compact``: :func:`circle_label_plan`'s (which two labels overlap)."""
    n = max(int(n_diameters), 1)
    start = math.pi * ((n - 1) // 2 + 0.5) / n  # the largest pi (k + 1/2) / n up to pi / 2
    if label_angle is not None:
        start = math.radians(float(label_angle))
    order = np.argsort([float(d) for d in circles], kind="stable")
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    pts = None if avoid is None else as_numpy(avoid).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(1)] if pts is not None else None
    R = disk_radius(c)
    scale = R if math.isfinite(R) else max((euclid_radius(float(d), c) for d in circles), default=1.0)
    out: list = [None] * len(circles)
    for idx in order:  # inner circles first, so that outer ones avoid their labels
        d, k = circles[idx], int(rank[idx])
        r = euclid_radius(float(d), c)
        angles = [start - math.pi * (k + j) / n for j in range(2 * n)] if pts is not None else [start - math.pi * k / n]
        best, best_cost, best_hits = None, None, (0, False)
        for th in angles:
            p = np.array([r * math.cos(th), r * math.sin(th)])
            # about a label's half-height (half-width: twice that) on a disk 200-300 px across (the page's; 0.09
            # before, for a disk a few inches across, let labels sit on the points of the page's smaller disks)
            near = size * scale
            data = 0 if pts is None or not len(pts) else int((np.abs(pts - p) < [2 * near, near]).all(1).sum())
            # compact: two labels are the same boxes (2 near x near each side of their spot): they meet when
            # their centres are closer than a box's full width and height, plus TOUCH_GAP (with 0.09 R, the
            # lessons', on the page's 185 px compare disks "d_H = 2" and "d_H = 3" sat side by side,
            # touching); the fixed layout without data keeps its spots
            apart = (1 + TOUCH_GAP) * near if compact else 0.09 * scale
            clash = sum(1 for q in out if q is not None and not (tolerate is not None and (q[2] or q[1] > tolerate))
                        and abs(q[0][0] - p[0]) < 4 * apart and abs(q[0][1] - p[1]) < 2 * apart)
            cost = data + 0.5 * (abs(p[0]) > 0.8 * scale) + 1000 * clash  # (x > 0.8 R: it would stick out of the view)
            if best_cost is None or cost < best_cost:
                best, best_cost, best_hits = (float(p[0]), float(p[1])), cost, (data, clash > 0)
        out[idx] = (best, *best_hits)
    return out


def hyperbolic_circle(center: Any, d: float, c: float, n: int = 120) -> np.ndarray:
    r"""The points at Poincaré distance ``d`` from ``center`` (2,), as a closed polyline (n, 2).

    .. math::

        \{\exp_z(\tfrac{d}{\lambda_z} u) : \|u\| = 1\}, \qquad \lambda_z = \frac{2}{1 - c\|z\|^2}

    (a tangent vector ``v`` at ``z`` moves :math:`\lambda_z\|v\|` far, Eq. 3). A Euclidean circle,
    but not centred on ``center`` unless it is the origin.
    """
    z = _f64(center).reshape(1, 2)
    th = torch.linspace(0, 2 * math.pi, n, dtype=torch.float64)
    u = torch.stack([th.cos(), th.sin()], -1)
    lam = poincare.conformal_factor(z, c)
    return poincare.expmap(z.expand(n, -1), u * d / lam, c).numpy()


def geodesic_arc(x: Any, y: Any, c: float, n: int = 100, full: bool = False) -> np.ndarray:
    r"""A polyline: ``n`` points of the geodesic from ``x`` to ``y`` (two points of the ball, (D,)), (n, D).

    .. math::

        \gamma(t) = \exp_x(t \log_x y), \qquad D(x, \gamma(t)) = t\, D(x, y)

    (Eq. 3: constant speed), for ``t`` in [0, 1]; ``full=True``: ``t`` spans the whole geodesic line,
    far enough on both sides to reach the boundary in float64 (``D = ±40/sqrt(c)`` from ``x``).
    (:func:`chestlab.poincare.geodesic` is the point :math:`\gamma(t)` itself, as a tensor.)
    """
    x, y = _f64(x), _f64(y)
    v = poincare.logmap(x, y, c)
    if full:
        d = max(float(poincare.dist(x, y, c)), 1e-12)
        reach = 40.0 / math.sqrt(c) if c > 0 else 10.0
        t = torch.linspace(-reach / d, reach / d, n, dtype=torch.float64)
    else:
        t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return poincare.expmap(x.expand(n, -1), t[:, None] * v, c).numpy()


def geodesic_arcs(x: Any, y: Any, c: float, n: int = 24) -> np.ndarray:
    r"""Many geodesics at once: ``n`` points of the geodesic from ``x[i]`` to ``y[i]``, ``(L, D)`` each
    -> ``(L, n, D)``; :math:`\gamma_i(t) = \exp_{x_i}(t \log_{x_i} y_i)`, ``t`` in [0, 1] -- what
    :func:`geodesic_arc` computes for one pair, in one batched call (any ``D``: the ball's, or the disk's)."""
    x, y = _f64(x), _f64(y)
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    if len(x) == 0:
        return np.zeros((0, n, x.shape[-1]))
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    with torch.no_grad(), poincare.checks(False):
        v = poincare.logmap(x, y, c)  # (L, D)
        L, D = x.shape
        pts = poincare.expmap(x[:, None, :].expand(L, n, D).reshape(-1, D), (t[None, :, None] * v[:, None, :]).reshape(-1, D), c)
    return pts.reshape(L, n, D).numpy()


# ------------------------------------------------------------------------------------------------
# points of the ball -> points of the disk
# ------------------------------------------------------------------------------------------------
def project_to_disk(x_h: Any, c: float, method: str = "auto", *, fit_on: Any = None) -> np.ndarray:
    r"""Points of the Poincaré ball (N, D_H) -> points of the Poincaré disk (N, 2), same curvature ``c``.

    ``method="exact"``: ``D_H`` must be 2; returns the points unchanged.
    ``method="tangent_pca"``:

    .. math::

        v = \log_0(x), \qquad x_{2d} = \exp_0(v B), \qquad B = \text{top-2 principal directions of } v

    an orthogonal projection through the origin (the origin -- the root of a hierarchy -- stays the
    centre, and :math:`\|vB\| \le \|v\|`, so no point moves away from it and all stay in the disk).
    ``fit_on`` (e.g. the data, when projecting the proxies) gives the points that define ``B``, so
    several sets share one projection. ``"auto"``: exact when ``D_H = 2``.
    """
    x = _f64(x_h)
    if x.dim() != 2:
        raise ValueError(f"x_h must be (N, D_H), got shape {tuple(x.shape)}")
    D = x.shape[1]
    if method == "auto":
        method = "exact" if D == 2 else "tangent_pca"
    if method == "exact":
        if D != 2:
            raise ValueError(f"method='exact' needs D_H = 2 (got D_H = {D}); use method='tangent_pca' or umap_disk")
        return x.numpy().copy()
    if method != "tangent_pca":
        raise ValueError(f"method = {method!r}: choose 'auto', 'exact' or 'tangent_pca'")
    c = float(c)
    v = poincare.logmap0(x, c)
    ref = v if fit_on is None else poincare.logmap0(_f64(fit_on), c)
    if D <= 2:
        basis = torch.eye(D, 2, dtype=torch.float64)
    else:
        # directions of largest variance (centred PCA) -- but the vectors are projected uncentred, so
        # the origin stays the origin and norms only shrink
        _, _, vh = torch.linalg.svd(ref - ref.mean(0, keepdim=True), full_matrices=False)
        basis = vh[:2].T
        # fix the sign so the picture does not flip between refreshes
        signs = torch.sign(basis[basis.abs().argmax(0), torch.arange(2)])
        basis = basis * torch.where(signs == 0, 1.0, signs)
    return poincare.expmap0(v @ basis, c).numpy()


def hyperboloid_to_disk(xy: Any, c: float = 1.0) -> np.ndarray:
    r"""UMAP's ``output_metric="hyperboloid"`` coordinates (N, 2) -> the Poincaré disk of curvature ``-c``, (N, 2).

    UMAP stores the first two coordinates :math:`p` of the unit hyperboloid,
    :math:`z = \sqrt{1 + \|p\|^2}`; the disk is its stereographic projection, scaled:

    .. math::

        x = \frac{p}{\sqrt{c}\,(1 + z)}

    Clipped just inside the boundary (huge UMAP coordinates round to norm 1 in float arithmetic).
    ``c = 0`` has no disk: the unit disk is used.
    """
    p = np.asarray(xy, dtype=np.float64)
    scale = np.maximum(np.abs(p).max(-1, keepdims=True), 1e-300)
    n = scale * np.linalg.norm(p / scale, axis=-1, keepdims=True)  # no overflow for huge coordinates
    big = n > 1.0
    ns = np.where(big, n, 1.0)
    # d = p / (1 + sqrt(1 + n^2)), written as (p / n) * n / (1 + z) when n > 1 so nothing overflows
    d = np.where(big, (p / ns) / (1.0 / ns + np.sqrt((1.0 / ns) ** 2 + 1.0)), p / (1.0 + np.sqrt(1.0 + np.minimum(n, 1.0) ** 2)))
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    limit = 1.0 - 1e-7
    d = np.where(n > limit, d * (limit / np.maximum(n, 1e-300)), d)
    return d / math.sqrt(c) if c > 0 else d


def projection_label(dim_h: int, method: str = "auto") -> str:
    """Human-readable name of what :func:`project_to_disk` / :func:`umap_disk` showed."""
    if method == "umap":
        return "UMAP (hyperboloid output) mapped to the disk — a nonlinear projection"
    if method == "exact" or (method == "auto" and dim_h == 2):
        return "exact: D_H = 2, the disk is the embedding space"
    return f"projection of D_H = {dim_h}: PCA in the tangent space at 0 (log_0, PCA, exp_0); distances are distorted"


def umap_disk(
    x_h: Any,
    c: float,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    fit_on_proxies: Any = None,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A 2-D UMAP of Poincaré points with hyperboloid output, mapped to the disk of curvature ``c``.

    The input metric is the Poincaré distance itself (a precomputed (N, N) matrix, so keep N below a
    few thousand). Slow (seconds to a minute with numba compilation): call it on demand only.
    With ``fit_on_proxies`` (P, D_H) the proxies are embedded together with the points and
    ``(points2d, proxies2d)`` is returned.
    """
    import umap  # heavy import (numba); only when asked

    x = torch.as_tensor(as_numpy(x_h), dtype=torch.float64)
    n = x.shape[0]
    if fit_on_proxies is not None:
        x = torch.cat([x, torch.as_tensor(as_numpy(fit_on_proxies), dtype=torch.float64).reshape(-1, x.shape[1])])
    if x.shape[0] < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {x.shape[0]}")
    d = poincare.pairwise_dist(x, x, float(c)).numpy()
    np.fill_diagonal(d, 0.0)
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, x.shape[0] - 1), min_dist=min_dist, metric="precomputed",
                        output_metric="hyperboloid", random_state=seed, n_components=2)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": expected, we want reproducibility
        warnings.simplefilter("ignore", UserWarning)
        emb = hyperboloid_to_disk(reducer.fit_transform(d), c)
    if fit_on_proxies is not None:
        return emb[:n], emb[n:]
    return emb


def proxy_points(proxies: Any, proxy_labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Proxies as ``(points (P, 2), class labels (P,))``. ``proxies``: (C, K, 2) -- ``K`` proxies per
    class, labels ``0..C-1`` repeated -- or (P, 2) -- one per class, labels ``0..P-1`` -- unless
    ``proxy_labels`` (P,) are given."""
    p = as_numpy(proxies)
    if p.ndim == 3:
        default = np.repeat(np.arange(p.shape[0]), p.shape[1])
    else:
        default = np.arange(len(p))
    labels = default if proxy_labels is None else as_numpy(proxy_labels).reshape(-1)
    return p.reshape(-1, 2), labels.astype(int)
