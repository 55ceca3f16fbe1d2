"""Matplotlib backend: draws what :mod:`chestlab.viz.geometry` computes on a matplotlib ``Axes``.

The same layers, colours and markers as :mod:`chestlab.viz.plotly`: circles centred at the origin
are :class:`~matplotlib.patches.Circle` patches, every other curve a polyline (a ``LineCollection``).
Also the lessons' disk and tree views (:func:`disk_view`, :func:`draw_embedded_tree`) and
:func:`to_png`. No pyplot: safe in threads and headless runs. Font sizes come from ``matplotlib.rcParams`` (no
fixed sizes), so :func:`chestlab.viz.style.use_lecture_style` makes every label projector-sized.
"""

from __future__ import annotations

import io
import math
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Circle

from . import geometry
from .style import COLORS, MPL_MARKERS, class_color, disk_palette, super_color

__all__ = ["add_polylines", "circle_label", "draw_disk", "scatter_embeddings", "scatter_proxies", "draw_tree", "style_disk",
           "disk_view", "draw_embedded_tree", "to_png"]


def add_polylines(ax: Any, lines: Sequence[np.ndarray], *, color: str = "black", lw: float = 1.0,
                  ls: str = "-", zorder: float = 0, label: Optional[str] = None) -> LineCollection:
    """All ``lines`` ((n, 2) arrays) as one ``LineCollection`` on ``ax``; returns it."""
    coll = LineCollection(list(lines), colors=color, linewidths=lw, linestyles=ls, zorder=zorder, label=label)
    ax.add_collection(coll, autolim=False)
    return coll


def draw_disk(ax: Any, c: float, *, grid: bool = False, circles: Sequence[float] = (), n_diameters: int = 6,
              grid_dists: Sequence[float] = (1.0, 2.0, 3.0), label_angle: Optional[float] = None,
              avoid: Any = None) -> None:
    """The disk of curvature ``-c`` behind the data: boundary (radius ``1/sqrt(c)``, none at ``c = 0``),
    the :func:`~chestlab.viz.geometry.geodesic_grid` when ``grid``, and a dotted circle labelled
    ``d_H = d`` at each Poincaré distance ``d`` of ``circles`` from the origin."""
    R = geometry.disk_radius(c)
    if math.isfinite(R):
        ax.add_patch(Circle((0, 0), R, fill=False, color=COLORS["boundary"], lw=1.2, zorder=0.5))
    if grid:
        add_polylines(ax, geometry.geodesic_grid(c, n_diameters, grid_dists), color=COLORS["grid"], lw=0.7,
                      label="geodesic grid")
    labels_at = geometry.circle_label_plan(c, circles, n_diameters, label_angle=label_angle, avoid=avoid)
    for d, spot in zip(circles, labels_at):
        r = geometry.euclid_radius(float(d), c)
        ax.add_patch(Circle((0, 0), r, fill=False, color=COLORS["circle"], lw=0.8, ls=":", zorder=0))
        if spot is None:  # no room clear of the data and the other labels: named in the corner note
            continue
        # on a white box, between two diameters of the grid (geometry.circle_label_points)
        ax.annotate(circle_label(d), spot, fontsize="medium", color=COLORS["circle_label"], ha="center",
                    va="center", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85), zorder=2.5)
    unlabelled = geometry.circle_note(circles, labels_at)
    if unlabelled:
        ax.text(0.01, 0.01, "dotted: $d_H$ = " + ", ".join(f"{d:g}" for d in unlabelled), transform=ax.transAxes,
                ha="left", va="bottom", fontsize="medium", color=COLORS["circle_label"],
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85), zorder=2.5)


def circle_label(d: float) -> str:
    """The label of the distance circle at Poincaré distance ``d`` from 0: ``$d_H$ = d`` (mathtext)."""
    return f"$d_H$ = {d:g}"


def scatter_embeddings(ax: Any, x2d: Any, labels: Any, super_labels: Any = None, *, size: float = 6,
                       palette: Optional[Sequence[str]] = None, color_by: str = "super") -> None:
    """Points ``x2d`` (N, 2) of classes ``labels`` (N,) and super-classes ``super_labels`` (N,), coloured
    as :func:`chestlab.viz.plotly.add_embeddings` colours them (``palette[class]``, default
    :func:`~chestlab.viz.style.disk_palette`: by super-class, each class a shade; ``color_by="class"``:
    one colour per class, the marker tells the super-classes apart)."""
    x = geometry.as_numpy(x2d).reshape(-1, 2)
    y = geometry.as_numpy(labels).astype(int).reshape(-1)
    s = np.zeros_like(y) if super_labels is None else geometry.as_numpy(super_labels).astype(int).reshape(-1)
    if palette is None:
        palette = disk_palette(y, None if super_labels is None else s, color_by=color_by)
    by_super = color_by == "super" and super_labels is not None
    for k, sup in enumerate(np.unique(s)):
        m = s == sup
        ax.scatter(x[m, 0], x[m, 1], s=size, c=[palette[i] for i in y[m]],
                   marker="o" if by_super else MPL_MARKERS[k % len(MPL_MARKERS)], linewidths=0)


def scatter_proxies(ax: Any, proxies: Any, proxy_labels: Any = None, *, size: float = 60,
                    palette: Optional[Sequence[str]] = None) -> None:
    """Proxies (C, K, 2) or (P, 2) (see :func:`~chestlab.viz.geometry.proxy_points`) as stars in their
    class's colour (``palette[class]``, default :func:`~chestlab.viz.style.class_color`)."""
    p, pl = geometry.proxy_points(proxies, proxy_labels)
    colors = [palette[i] if palette is not None and 0 <= i < len(palette) else class_color(i) for i in pl]
    ax.scatter(p[:, 0], p[:, 1], s=size, marker="*", c=colors, edgecolors=COLORS["proxy_edge"], linewidths=0.5)


def draw_tree(ax: Any, tree: dict) -> None:
    """The super-class nodes and the root of :func:`chestlab.viz.hierarchy.disk_tree_geometry` with
    their geodesics, as :func:`chestlab.viz.plotly.add_tree` draws them."""
    for g in (int(v) for v in tree["groups"]):
        add_polylines(ax, [p for gg, p in tree["child_lines"] if gg == g], color=super_color(g), lw=0.7, zorder=1.5).set_alpha(0.55)
    add_polylines(ax, tree["root_lines"], color=COLORS["root"], lw=1.5, zorder=2)
    nodes, r = tree["nodes"], tree["root"]
    ax.scatter(nodes[:, 0], nodes[:, 1], s=90, marker="D", c=[super_color(int(g)) for g in tree["groups"]],
               edgecolors=COLORS["root"], linewidths=1.0, zorder=4, label="super-class nodes")
    ax.scatter([r[0]], [r[1]], s=70, marker="s", c=COLORS["root"], edgecolors="white", linewidths=1.0, zorder=4.5,
               label="root")


def style_disk(ax: Any, lim: float, *, title: Optional[str] = None) -> None:
    """Square view ``[-lim, lim]^2`` with equal aspect, axes labelled :math:`x_1`, :math:`x_2` (the
    disk's coordinates); label, tick and title sizes are matplotlib's current ones
    (``axes.labelsize``, ``xtick.labelsize``, ``axes.titlesize``: projector-sized under
    :func:`~chestlab.viz.style.use_lecture_style`)."""
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)


def disk_view(ax: Any, c: float, *, grid: bool = True, circles: Sequence[float] = (), n_diameters: int = 6,
              grid_dists: Sequence[float] = (1.0, 2.0, 3.0), label_angle: Optional[float] = None,
              avoid: Any = None) -> None:
    """Draw the Poincaré disk of curvature ``-c`` on a matplotlib axis: its boundary (radius
    ``1/sqrt(c)``), a geodesic grid (diameters, and the geodesics crossing each diameter at right
    angles at Poincaré distance ``grid_dists`` from 0; none at ``c = 0``) and dotted circles of the
    given Poincaré radii around the origin, labelled ``d_H = d`` (``label_angle``: the first label's
    angle in degrees; by default between two diameters of the grid; ``avoid``: points (N, 2) of the
    figure the labels should not cover); equal aspect, labelled axes.
    :func:`draw_disk` and :func:`style_disk` with the lessons' view (three disk radii wide at ``c = 0``)."""
    draw_disk(ax, c, grid=grid and c > 0, circles=circles, n_diameters=n_diameters, grid_dists=grid_dists,
              label_angle=label_angle, avoid=avoid)
    style_disk(ax, geometry.view_limit(c, margin=0.04, extent=3.0))


def draw_embedded_tree(ax: Any, x: Any, tree: Any, c: float, *, polar: bool = False, title: Optional[str] = None,
                       circles: Sequence[float] = (), legend: bool = True) -> None:
    r"""Draw a tree embedded in 2-D (:mod:`chestlab.tree_embedding`): ``x`` (n, 2) the points of the
    nodes of ``tree`` (a :class:`~chestlab.tree_embedding.Tree`), its edges in grey, the nodes coloured
    by level (root dark, leaves light: ``viridis``) and smaller the deeper they sit. Equal aspect,
    labelled axes.

    * ``c > 0``: the disk of curvature ``-c`` behind, each edge a geodesic, dotted circles at the
      Poincaré distances ``circles`` from the origin;
    * ``c > 0, polar=True``: the same points in polar coordinates around the origin with the radius
      :math:`d_H(0, x) = 2\|\log_0 x\|` and the angle kept (the disk with its depth unrolled, edges
      straight): what the disk squeezes against its boundary spreads out;
    * ``c = 0``: the plane in the coordinates ``2x``, where the distance of
      :func:`~chestlab.tree_embedding.pairwise` is Euclidean."""
    import matplotlib
    import torch

    from .. import poincare

    x = torch.as_tensor(geometry.as_numpy(x), dtype=torch.float64)
    child = torch.arange(1, tree.n)
    if c > 0 and not polar:
        pts = x
        disk_view(ax, c, grid=False, circles=circles)
        lines = [geometry.geodesic_arc(pts[tree.parent[v]], pts[v], c, 24) for v in child.tolist()]
    else:
        pts = 2 * poincare.logmap0(x, c) if c > 0 else 2 * x
        lines = [np.stack([pts[tree.parent[v]].numpy(), pts[v].numpy()]) for v in child.tolist()]
        style_disk(ax, geometry.view_limit(0.0, pts.numpy()))
        if c > 0:
            for d in circles:
                ax.add_patch(Circle((0, 0), d, fill=False, color=COLORS["circle"], lw=0.8, ls=":", zorder=0))
            ax.set_xlabel(r"$d_H(0, x)\,\cos\varphi$")
            ax.set_ylabel(r"$d_H(0, x)\,\sin\varphi$")
        else:
            ax.set_xlabel("$y_1 = 2x_1$")
            ax.set_ylabel("$y_2 = 2x_2$")
    add_polylines(ax, lines, color="0.55", lw=0.8, zorder=1)
    depth = tree.depth
    cmap = matplotlib.colormaps["viridis"]
    for lev in range(depth + 1):
        m = (tree.level == lev).numpy()
        name = "root" if lev == 0 else ("leaves" if lev == depth else f"level {lev}")
        ax.scatter(pts[m, 0], pts[m, 1], s=90 * 0.55**lev + 6, color=cmap(lev / max(depth, 1) * 0.9),
                   edgecolors="k" if lev == 0 else "none", linewidths=0.8, zorder=3 + depth - lev,
                   label=f"{name} ({int(m.sum())})")
    if legend:
        ax.legend(loc="upper right", markerscale=1.2, fontsize="small")
    if title:
        ax.set_title(title)


def to_png(fig: Any, dpi: int = 150) -> bytes:
    """PNG bytes of a matplotlib figure (plotly PNG export would need kaleido and a browser)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
