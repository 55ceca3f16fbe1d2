"""Figure builders shared by the dashboard (``app.py``), the notebooks and the reproduction scripts.

One source of truth per figure. Interactive builders return a :class:`plotly.graph_objects.Figure`
with a fixed ``uirevision`` so that a live page keeps the user's zoom when the figure is rebuilt;
the ``*_mpl`` builders return a :class:`matplotlib.figure.Figure` in the papers' static style for
PNG/PDF export (:func:`to_png`).

Figures:

* :func:`similarity_histogram` -- ``S_H(x, p_c)`` / ``S_E(x, p_c)`` of a batch, positive class vs
  negative classes (the CHEST paper's Fig. 3), with the margins ``delta_h`` / ``delta_e`` drawn.
* :func:`poincare_disk` -- points in the Poincaré disk of curvature ``-c`` coloured by class, marker
  by super-class, proxies as stars; optional geodesic grid and distance circles. Coordinates come
  from :func:`project_to_disk` (exact for ``D_H = 2``, tangent-space PCA otherwise) or
  :func:`umap_disk` (UMAP with hyperboloid output, mapped to the disk).
* :func:`training_curves` -- loss components and Recall@1 / MAP@R over steps.
* :func:`hard_negative_weights_figure` -- weights ``w`` of the pairwise cross-entropy over negatives
  sorted by distance, sphere vs hyperbolic (the hard-negative paper's Fig. 3).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import losses, poincare

__all__ = [
    "COLORS",
    "similarity_histogram",
    "similarity_histogram_mpl",
    "poincare_disk",
    "poincare_disk_mpl",
    "project_to_disk",
    "projection_label",
    "hyperboloid_to_disk",
    "umap_disk",
    "training_curves",
    "training_curves_mpl",
    "hard_negative_weights_figure",
    "hard_negative_weights",
    "to_png",
]

#: Fixed colours: hyperbolic (H) vs Euclidean (E), positive vs negative class.
COLORS = {"H": "#1f77b4", "E": "#ff7f0e", "pos": "#2166ac", "neg": "#d6604d", "proxy_edge": "#111111"}
# class colours cycle through a long qualitative palette; the marker symbol tells super-classes apart
_PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#393b79 #637939 #8c6d31 #843c39 #7b4173 #3182bd #e6550d #31a354 #756bb1 #636363 "
    "#6baed6 #fd8d3c #74c476 #9e9ac8 #969696 #9c9ede #cedb9c #e7cb94 #e7969c #de9ed6"
).split()
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "pentagon", "hexagon", "star-triangle-up")
_MPL_MARKERS = ("o", "s", "D", "^", "P", "X", "v", "p", "h", "*")


def _np(x: Any) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _radius(c: float) -> float:
    """Euclidean radius of the Poincaré ball of curvature -c (inf at c = 0, the Euclidean plane)."""
    return math.inf if c <= 0 else 1.0 / math.sqrt(c)


def _euclid_radius_of(d: float, c: float) -> float:
    """Euclidean norm of a point at Poincaré distance ``d`` from 0: ``tanh(sqrt(c) d / 2) / sqrt(c)``
    (``d / 2`` at c = 0, since D_H -> 2||x - y||)."""
    return d / 2 if c <= 0 else math.tanh(math.sqrt(c) * d / 2) / math.sqrt(c)


# ------------------------------------------------------------------------------------------------
# similarity histograms (CHEST paper, Fig. 3)
# ------------------------------------------------------------------------------------------------
def _sim_parts(sim_event: Any) -> dict:
    get = (lambda k: sim_event.get(k)) if isinstance(sim_event, Mapping) else (lambda k: getattr(sim_event, k, None))
    return {k: _np(get(k)) for k in ("h_pos", "h_neg", "e_pos", "e_neg")}


def similarity_histogram(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    bins: int = 40,
    title: Optional[str] = None,
    uirevision: str = "similarity",
    height: int = 330,
) -> go.Figure:
    """Histograms of a batch's soft similarities to its own class (positive) and to every other class
    (negative), H and E side by side: the CHEST paper's Fig. 3.

    ``sim_event``: a :class:`chestlab.train.SimilarityEvent` or a mapping with ``h_pos``, ``h_neg``,
    ``e_pos``, ``e_neg`` (arrays or None when a space is switched off, e.g. ``eta_E = 0``).
    The margin ``delta`` of Eq. 7 is drawn as a dashed line at ``median(S_neg) + delta``: the loss is
    satisfied when positives lie right of it. Densities are normalised so both classes compare.
    """
    parts = _sim_parts(sim_event)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("hyperbolic S_H", "Euclidean S_E"),
                        horizontal_spacing=0.08)
    for col, (space, delta) in enumerate((("h", delta_h), ("e", delta_e)), start=1):
        pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
        if pos is None or neg is None or len(pos) == 0:
            dom = (fig.layout.xaxis if col == 1 else fig.layout.xaxis2).domain
            fig.add_annotation(text="not computed<br>(its weight η is 0,<br>or the loss has no proxies)",
                               xref="paper", yref="paper", x=(dom[0] + dom[1]) / 2, y=0.5, showarrow=False,
                               font=dict(color="gray"))
            fig.update_xaxes(showticklabels=False, row=1, col=col)
            fig.update_yaxes(showticklabels=False, row=1, col=col)
            continue
        lo = float(min(pos.min(), neg.min()))
        hi = float(max(pos.max(), neg.max()))
        size = max((hi - lo) / bins, 1e-6)
        for name, vals, color in (("positive class", pos, COLORS["pos"]), ("negative classes", neg, COLORS["neg"])):
            fig.add_trace(
                go.Histogram(x=vals, name=name, legendgroup=name, showlegend=col == 1, marker_color=color, opacity=0.6,
                             histnorm="probability density", xbins=dict(start=lo, end=hi + size, size=size)),
                row=1, col=col,
            )
        if delta is not None and np.isfinite(delta):
            # vertical lines as traces (not shapes) so the legend explains them and they span the data
            m = float(np.median(neg))
            edges = np.arange(lo, hi + 2 * size, size)
            top = 1.05 * max(np.histogram(v, bins=edges, density=True)[0].max() for v in (pos, neg))
            fig.add_trace(go.Scatter(x=[m, m], y=[0, top], mode="lines",
                                     line=dict(color=COLORS["neg"], width=1, dash="dot"), name="median of negatives",
                                     legendgroup="median", showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=[m + float(delta)] * 2, y=[0, top], mode="lines",
                                     line=dict(color="black", width=2, dash="dash"),
                                     name="median of negatives + margin δ", legendgroup="margin", showlegend=col == 1,
                                     hovertemplate=f"δ_{space.upper()} = {float(delta):g}<extra></extra>"), row=1, col=col)
            fig.update_yaxes(row=1, col=col, rangemode="tozero")
            fig.layout.annotations[col - 1].text += f"  (δ_{space.upper()} = {float(delta):g})"
    fig.update_layout(barmode="overlay", uirevision=uirevision, height=height, title=title,
                      margin=dict(l=40, r=10, t=60 if title else 40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.25, x=0.5, xanchor="center", font=dict(size=11)))
    fig.update_xaxes(title_text="S(x, p_c)  (higher = closer)", title_font_size=11)
    fig.update_yaxes(title_text="density", col=1)
    return fig


def similarity_histogram_mpl(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    bins: int = 40,
    title: Optional[str] = None,
    figsize: tuple[float, float] = (7.0, 2.6),
):
    """The same figure in the paper's static style (matplotlib), for PNG/PDF: step histograms,
    positive in blue, negative in red, the margin as a dashed line."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads

    parts = _sim_parts(sim_event)
    fig = Figure(figsize=figsize, dpi=150, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (space, label, delta) in zip(axes, (("h", "$S_H(x, p_c)$", delta_h), ("e", "$S_E(x, p_c)$", delta_e))):
        pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel(label)
        if pos is None or neg is None or len(pos) == 0:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        edges = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()) + 1e-9, bins + 1)
        ax.hist(neg, bins=edges, density=True, color=COLORS["neg"], alpha=0.45, label="negative")
        ax.hist(pos, bins=edges, density=True, color=COLORS["pos"], alpha=0.55, label="positive")
        if delta is not None and np.isfinite(delta):
            ax.axvline(float(np.median(neg)) + float(delta), color="k", ls="--", lw=1, label=r"median neg + $\delta$")
    axes[0].set_ylabel("density")
    axes[0].legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------------
# the Poincaré disk
# ------------------------------------------------------------------------------------------------
def projection_label(dim_h: int, method: str = "auto") -> str:
    """Human-readable name of what :func:`project_to_disk` / :func:`umap_disk` showed."""
    if method == "umap":
        return "UMAP (hyperboloid output) mapped to the disk — a nonlinear projection"
    if method == "exact" or (method == "auto" and dim_h == 2):
        return "exact: D_H = 2, the disk is the embedding space"
    return f"projection of D_H = {dim_h}: PCA in the tangent space at 0 (log_0, PCA, exp_0); distances are distorted"


def project_to_disk(
    x_h: Any,
    c: float,
    method: str = "auto",
    *,
    fit_on: Any = None,
) -> np.ndarray:
    """Points of the Poincaré ball (N, D_H) -> points of the Poincaré disk (N, 2), same curvature ``c``.

    ``method="exact"``: ``D_H`` must be 2; returns the points unchanged.
    ``method="tangent_pca"``: ``v = log_0(x)``, orthogonal projection of ``v`` onto the plane of the
    top-2 principal directions of ``v`` (an orthogonal projection through the origin: the origin -- the
    root of a hierarchy -- stays the centre and no point moves away from it), then ``exp_0``. Norms can only shrink, so every point stays inside
    the disk. ``fit_on`` (e.g. the data, when projecting the proxies) gives the points that define the
    directions, so several sets share one projection. ``"auto"``: exact when ``D_H = 2``.
    """
    x = torch.as_tensor(_np(x_h), dtype=torch.float64)
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
    ref = v if fit_on is None else poincare.logmap0(torch.as_tensor(_np(fit_on), dtype=torch.float64), c)
    if D == 1:
        basis = torch.eye(1, 2, dtype=torch.float64)
    elif D == 2:
        basis = torch.eye(2, dtype=torch.float64)
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
    """UMAP's ``output_metric="hyperboloid"`` coordinates (N, 2) -> the Poincaré disk of curvature ``-c``.

    UMAP stores the first two coordinates of the unit hyperboloid, ``z = sqrt(1 + x^2 + y^2)``; the
    Poincaré disk is its stereographic projection ``(x, y) / (1 + z)``, scaled by ``1/sqrt(c)``.
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


def umap_disk(
    x_h: Any,
    c: float,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    fit_on_proxies: Any = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A 2-D UMAP of Poincaré points with hyperboloid output, mapped to the disk of curvature ``c``.

    The input metric is the Poincaré distance itself (a precomputed (N, N) matrix, so keep N below a
    few thousand). Slow (seconds to a minute with numba compilation): call it on demand only.
    With ``fit_on_proxies`` (P, D_H) the proxies are embedded together with the points and
    ``(points2d, proxies2d)`` is returned.
    """
    import umap  # heavy import (numba); only when asked

    x = torch.as_tensor(_np(x_h), dtype=torch.float64)
    n = x.shape[0]
    if fit_on_proxies is not None:
        x = torch.cat([x, torch.as_tensor(_np(fit_on_proxies), dtype=torch.float64).reshape(-1, x.shape[1])])
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


def _geodesic_grid(R: float, c: float, n_diameters: int = 6, dists: Sequence[float] = (1.0, 2.0, 3.0)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Polylines of a geodesic grid: diameters (geodesics through 0) and, for each diameter, the
    geodesics orthogonal to it at Poincaré distance ``d`` from 0 (circle arcs meeting the boundary at
    right angles: centre at ``(R^2 + a^2) / (2a)`` on the diameter, ``a`` the crossing point)."""
    lines = []
    finite = math.isfinite(R)
    span = R if finite else 1.5 * max(_euclid_radius_of(max(dists), c), 1.0)
    for k in range(n_diameters):
        th = math.pi * k / n_diameters
        u = np.array([math.cos(th), math.sin(th)])
        t = np.array([-span, span])
        lines.append((t * u[0], t * u[1]))
        for d in dists:
            a = _euclid_radius_of(d, c)
            for sgn in (1, -1):
                if not finite:  # Euclidean plane: straight lines orthogonal to the diameter
                    s = np.linspace(-span, span, 2)
                    p = sgn * a * u[:, None] + np.array([-u[1], u[0]])[:, None] * s
                    lines.append((p[0], p[1]))
                    continue
                x0 = (R * R + a * a) / (2 * a)
                rho = x0 - a
                half = math.atan2(R, rho) if rho > 0 else math.pi / 2  # arc inside the disk: |angle| < atan(R/rho)
                phi = np.linspace(math.pi - half, math.pi + half, 48)
                px, py = x0 + rho * np.cos(phi), rho * np.sin(phi)
                rot = np.array([[u[0], -u[1]], [u[1], u[0]]]) * sgn
                q = rot @ np.vstack([px, py])
                lines.append((q[0], q[1]))
    return lines


def poincare_disk(
    x2d: Any,
    labels: Any,
    super_labels: Any = None,
    proxies2d: Any = None,
    *,
    c: float = 1.0,
    grid: bool = False,
    circles: Sequence[float] = (),
    title: Optional[str] = None,
    proxy_labels: Any = None,
    class_names: Optional[Sequence[str]] = None,
    super_names: Optional[Sequence[str]] = None,
    uirevision: str = "disk",
    height: int = 520,
    marker_size: int = 6,
) -> go.Figure:
    """Points of the Poincaré disk of curvature ``-c``: colour = class, marker = super-class, proxies
    as large stars in their class colour. ``x2d`` (N, 2), ``labels`` (N,), ``super_labels`` (N,) or
    None, ``proxies2d`` (P, 2) with ``proxy_labels`` (P,) (default: ``K`` consecutive proxies per
    class, i.e. the ``(C, K, 2)`` layout flattened). The boundary circle has radius ``1/sqrt(c)``
    (none at ``c = 0``, the Euclidean plane); ``grid`` adds geodesics; ``circles`` adds the sets of
    points at those Poincaré distances from the origin."""
    x = _np(x2d).reshape(-1, 2)
    y = _np(labels).astype(int).reshape(-1)
    s = np.zeros_like(y) if super_labels is None else _np(super_labels).astype(int).reshape(-1)
    R = _radius(float(c))
    fig = go.Figure()
    # background: boundary, grid, distance circles (drawn first, so points sit on top)
    if math.isfinite(R):
        fig.add_shape(type="circle", x0=-R, y0=-R, x1=R, y1=R, line=dict(color="black", width=2), layer="below")
    if grid:
        gx: list = []
        gy: list = []
        for lx, ly in _geodesic_grid(R, float(c)):
            gx += list(lx) + [None]
            gy += list(ly) + [None]
        fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", line=dict(color="rgba(0,0,0,0.15)", width=1),
                                 hoverinfo="skip", name="geodesics", showlegend=True))
    for d in circles:
        rr = _euclid_radius_of(float(d), float(c))
        fig.add_shape(type="circle", x0=-rr, y0=-rr, x1=rr, y1=rr, line=dict(color="gray", width=1, dash="dot"), layer="below")
        fig.add_annotation(x=rr * 0.7071, y=rr * 0.7071, text=f"D_H={d:g}", showarrow=False, font=dict(size=10, color="gray"))
    colors = np.array([_PALETTE[i % len(_PALETTE)] for i in y]) if len(y) else np.array([])
    cname = (lambda i: class_names[i] if class_names is not None and 0 <= i < len(class_names) else f"class {i}")
    sname = (lambda i: super_names[i] if super_names is not None and 0 <= i < len(super_names) else f"super-class {i}")
    # one trace per super-class: few traces (fast) and a legend that explains the marker shapes
    for k, sup in enumerate(np.unique(s)):
        m = s == sup
        fig.add_trace(go.Scattergl(
            x=x[m, 0], y=x[m, 1], mode="markers", name=sname(int(sup)),
            marker=dict(color=colors[m], size=marker_size, symbol=_SYMBOLS[k % len(_SYMBOLS)], opacity=0.8,
                        line=dict(width=0)),
            text=[cname(int(i)) for i in y[m]], hovertemplate="%{text}<extra>%{fullData.name}</extra>",
        ))
    if proxies2d is not None:
        p = _np(proxies2d)
        if p.ndim == 3:  # (C, K, 2)
            pl = np.repeat(np.arange(p.shape[0]), p.shape[1]) if proxy_labels is None else _np(proxy_labels).reshape(-1)
            p = p.reshape(-1, 2)
        else:
            pl = np.arange(len(p)) if proxy_labels is None else _np(proxy_labels).reshape(-1)
        fig.add_trace(go.Scatter(
            x=p[:, 0], y=p[:, 1], mode="markers", name="proxies (train classes)",
            marker=dict(symbol="star", size=14, color=[_PALETTE[int(i) % len(_PALETTE)] for i in pl],
                        line=dict(color=COLORS["proxy_edge"], width=1)),
            text=[f"proxy of {cname(int(i))}" for i in pl], hovertemplate="%{text}<extra></extra>",
        ))
    lim = 1.03 * R if math.isfinite(R) else 1.05 * float(np.abs(x).max() if x.size else 1.0) or 1.0
    fig.update_xaxes(range=[-lim, lim], visible=False, constrain="domain")
    fig.update_yaxes(range=[-lim, lim], visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title, uirevision=uirevision, height=height, plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=50 if title else 10, b=10),
                      legend=dict(font=dict(size=10), itemsizing="constant", orientation="h", yanchor="top", y=-0.01,
                                  x=0.5, xanchor="center"))
    return fig


def poincare_disk_mpl(x2d: Any, labels: Any, super_labels: Any = None, proxies2d: Any = None, *, c: float = 1.0,
                      circles: Sequence[float] = (), title: Optional[str] = None, figsize: tuple[float, float] = (4.5, 4.5)):
    """Static (matplotlib) version of :func:`poincare_disk`, for PNG/PDF."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    x = _np(x2d).reshape(-1, 2)
    y = _np(labels).astype(int).reshape(-1)
    s = np.zeros_like(y) if super_labels is None else _np(super_labels).astype(int).reshape(-1)
    R = _radius(float(c))
    fig = Figure(figsize=figsize, dpi=150, layout="constrained")
    ax = fig.subplots()
    if math.isfinite(R):
        ax.add_patch(Circle((0, 0), R, fill=False, color="k", lw=1.2))
    for d in circles:
        ax.add_patch(Circle((0, 0), _euclid_radius_of(float(d), float(c)), fill=False, color="gray", lw=0.6, ls=":"))
    for k, sup in enumerate(np.unique(s)):
        m = s == sup
        ax.scatter(x[m, 0], x[m, 1], s=6, c=[_PALETTE[i % len(_PALETTE)] for i in y[m]], marker=_MPL_MARKERS[k % len(_MPL_MARKERS)], linewidths=0)
    if proxies2d is not None:
        p = _np(proxies2d)
        pl = np.repeat(np.arange(p.shape[0]), p.shape[1]) if p.ndim == 3 else np.arange(len(p))
        p = p.reshape(-1, 2)
        ax.scatter(p[:, 0], p[:, 1], s=60, marker="*", c=[_PALETTE[int(i) % len(_PALETTE)] for i in pl], edgecolors="k", linewidths=0.5)
    lim = 1.03 * R if math.isfinite(R) else 1.05 * float(np.abs(x).max() if x.size else 1.0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------------
_LOSS_KEYS = (("loss", "total L (Eq. 10)", "black"), ("l_h", "L_H", COLORS["H"]), ("l_e", "L_E", COLORS["E"]),
              ("l_hyphc", "L_HypHC", "#2ca02c"))


def _series(rows: Sequence[Mapping], key: str, max_points: int) -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None and np.isfinite(r[key])]
    if len(pts) > max_points:  # keep the page light: thin long runs evenly, always keep the last point
        idx = np.unique(np.r_[np.linspace(0, len(pts) - 1, max_points).astype(int), len(pts) - 1])
        pts = [pts[i] for i in idx]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(history_rows: Iterable[Mapping], *, uirevision: str = "curves", height: int = 360,
                    max_points: int = 400, title: Optional[str] = None) -> go.Figure:
    """Loss components (left) and Recall@1 / MAP@R (middle / right) over steps.

    ``history_rows``: dicts with ``step`` and any of ``loss``, ``l_h``, ``l_e``, ``l_hyphc`` (step rows)
    or metric keys ``{split}/{space}/{metric}``, e.g. ``test/H/R@1`` (``Trainer.history`` rows). Test =
    unseen classes (solid), train classes dashed; H blue, E orange."""
    rows = list(history_rows)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss (per step)", "Recall@1", "MAP@R"), horizontal_spacing=0.07)
    for key, name, color in _LOSS_KEYS:
        xs, ys = _series(rows, key, max_points)
        if xs and (key == "loss" or any(v != 0 for v in ys)):
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=color, width=1.5 if key == "loss" else 1)),
                          row=1, col=1)
    for col, metric in ((2, "R@1"), (3, "MAP@R")):
        for split, dash in (("test", "solid"), ("train", "dash")):
            for space in ("H", "E"):
                xs, ys = _series(rows, f"{split}/{space}/{metric}", max_points)
                if xs:
                    fig.add_trace(go.Scatter(
                        x=xs, y=ys, mode="lines+markers", marker=dict(size=4),
                        name=f"{space} {'unseen (test)' if split == 'test' else 'train'} classes",
                        legendgroup=f"{split}{space}", showlegend=col == 2,
                        line=dict(color=COLORS[space], dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=3)
    fig.update_layout(uirevision=uirevision, height=height, title=title, margin=dict(l=40, r=10, t=50 if title else 30, b=10),
                      legend=dict(font=dict(size=10), orientation="h", yanchor="top", y=-0.28, x=0.5, xanchor="center"))
    return fig


def training_curves_mpl(history_rows: Iterable[Mapping], *, figsize: tuple[float, float] = (9.0, 2.6)):
    """Static (matplotlib) version of :func:`training_curves`, for PNG/PDF."""
    from matplotlib.figure import Figure

    rows = list(history_rows)
    fig = Figure(figsize=figsize, dpi=150, layout="constrained")
    axes = fig.subplots(1, 3)
    for key, name, color in _LOSS_KEYS:
        xs, ys = _series(rows, key, 2000)
        if xs and (key == "loss" or any(v != 0 for v in ys)):
            axes[0].plot(xs, ys, color=color, lw=1, label=name)
    for ax, metric in ((axes[1], "R@1"), (axes[2], "MAP@R")):
        for split, ls in (("test", "-"), ("train", "--")):
            for space in ("H", "E"):
                xs, ys = _series(rows, f"{split}/{space}/{metric}", 2000)
                if xs:
                    ax.plot(xs, ys, ls=ls, color=COLORS[space], marker="o", ms=2, lw=1, label=f"{space} {split}")
        ax.set_ylim(0, 1.02)
        ax.set_title(metric, fontsize=9)
    axes[0].set_title("loss", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.spines[["top", "right"]].set_visible(False)
        if ax.lines:
            ax.legend(frameon=False, fontsize=6)
    return fig


# ------------------------------------------------------------------------------------------------
# hard negatives (hard-negative paper, Fig. 3)
# ------------------------------------------------------------------------------------------------
def hard_negative_weights(v: Any, t: float, c: Optional[float], *, anchor: int = 0, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``w_ik`` of :func:`chestlab.losses.hard_negative_weights` for one anchor of the tangent
    features ``v`` (N, D): on the sphere (``c=None``: cosine of ``v``) or in the Poincaré ball of
    curvature ``c`` (points ``exp_0(v)``). Returns ``(distance, w)`` of the negatives (all others, or
    the other-label ones when ``labels`` are given) sorted by distance, nearest (hardest) first."""
    vv = torch.as_tensor(_np(v), dtype=torch.float64)
    keep = torch.ones(len(vv), dtype=torch.bool)
    keep[anchor] = False
    if labels is not None:
        lab = torch.as_tensor(_np(labels)).reshape(-1)
        keep &= lab != lab[anchor]
    if c is None:
        z = vv
        dist = 1.0 - torch.nn.functional.cosine_similarity(z[anchor][None], z[keep], dim=-1)
        w = losses.hard_negative_weights(z[anchor], z[keep], t)
    else:
        z = poincare.expmap0(vv, float(c))
        dist = poincare.dist(z[anchor][None], z[keep], float(c))
        w = losses.hard_negative_weights(z[anchor], z[keep], t, c=float(c))
    order = torch.argsort(dist)
    return dist[order].numpy(), w[order].numpy()


def hard_negative_weights_figure(
    c_values: Sequence[float],
    t: float,
    *,
    t_sphere: Optional[float] = None,
    v: Any = None,
    labels: Any = None,
    anchor: int = 0,
    n: int = 64,
    dim: int = 16,
    seed: int = 0,
    uirevision: str = "hardneg",
    height: int = 320,
) -> go.Figure:
    """Weights ``w`` of the pairwise cross-entropy's gradient over the negatives of one anchor, sorted
    by distance (hardest first): sphere (cosine, temperature ``t_sphere``, default ``t``) vs the
    Poincaré ball for each curvature in ``c_values`` (temperature ``t``). The hard-negative paper's
    Fig. 3: small ``t`` and hyperbolic distances concentrate ``w`` on the hardest negatives.

    ``v`` (N, D): tangent features (``log_0`` of a model's ``x_H``, say) shared by all geometries so
    only the geometry changes; default: ``n`` Gaussian vectors in ``dim`` dimensions (``seed``)."""
    if v is None:
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(n, dim, generator=g, dtype=torch.float64)
    ts = float(t if t_sphere is None else t_sphere)
    fig = go.Figure()
    _, w = hard_negative_weights(v, ts, None, anchor=anchor, labels=labels)
    fig.add_trace(go.Scatter(x=np.arange(1, len(w) + 1), y=w, mode="lines+markers", marker=dict(size=4),
                             name=f"sphere (cos), t = {ts:g}  · max w = {w.max():.2f}", line=dict(color=COLORS["E"], width=2)))
    shades = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#6a51a3")
    for i, c in enumerate(c_values):
        _, w = hard_negative_weights(v, float(t), float(c), anchor=anchor, labels=labels)
        fig.add_trace(go.Scatter(x=np.arange(1, len(w) + 1), y=w, mode="lines+markers", marker=dict(size=4),
                                 name=f"hyperbolic c = {float(c):g}, t = {float(t):g}  · max w = {w.max():.2f}",
                                 line=dict(color=shades[i % len(shades)], width=2)))
    fig.add_hline(y=1.0 / max(len(w), 1), line=dict(color="gray", dash="dot"), annotation_text="uniform 1/N",
                  annotation_position="top right")
    fig.update_layout(uirevision=uirevision, height=height, margin=dict(l=40, r=10, t=30, b=40),
                      xaxis_title="negatives sorted by distance to the anchor (1 = hardest)",
                      yaxis=dict(title="weight w_ik (log scale)", type="log", exponentformat="power"),
                      legend=dict(font=dict(size=10), x=0.98, xanchor="right", y=0.98))
    return fig


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------
def to_png(fig: Any, dpi: int = 150) -> bytes:
    """PNG bytes of a matplotlib figure (plotly PNG export would need kaleido and a browser)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
