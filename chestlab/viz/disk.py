"""The Poincaré disk with a model's embeddings, proxies and class hierarchy.

* :func:`poincare_disk` (plotly) / :func:`poincare_disk_mpl` (matplotlib) -- points in the Poincaré
  disk of curvature ``-c`` coloured by super-class (shade = class), proxies as stars, the
  super-class nodes and the root with their geodesics; optional geodesic grid and distance circles.
  Both draw one description (:func:`disk_layers`: colours, label obstacles, view) with the layers of
  :mod:`chestlab.viz.plotly` / :mod:`chestlab.viz.mpl`. Coordinates come from
  :func:`chestlab.viz.geometry.project_to_disk` (exact for ``D_H = 2``, tangent-space PCA otherwise)
  or :func:`chestlab.viz.geometry.umap_disk`, named by :func:`chestlab.viz.geometry.projection_label`.
* :func:`disk_legend` -- a legend entry per class on a :func:`poincare_disk` figure (the lessons).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import geometry
from .style import disk_palette, fit_figsize

__all__ = ["disk_layers", "poincare_disk", "poincare_disk_mpl", "disk_legend"]


def disk_layers(x2d: Any, labels: Any, super_labels: Any = None, proxies2d: Any = None, *, c: float = 1.0,
                proxy_labels: Any = None, class_super: Any = None, color_by: str = "super",
                tree: Optional[dict] = None) -> dict:
    """What both disk figures draw besides the backend's layers: ``{"labels" (N,), "super" (N,) or
    None, "palette" (the colour of every class: :func:`chestlab.viz.style.disk_palette`, covering the
    proxies' classes too), "avoid" (the points, proxies and tree nodes, (M, 2): where the circle
    labels should not go), "lim" (the half-width of the square view)}``."""
    lab = geometry.as_numpy(labels).astype(int).reshape(-1)
    sup = None if super_labels is None else geometry.as_numpy(super_labels).astype(int).reshape(-1)
    cs = None if class_super is None else geometry.as_numpy(class_super).astype(int).reshape(-1)
    pl = None if proxies2d is None else geometry.proxy_points(proxies2d, proxy_labels)[1]
    n = 0 if pl is None or not len(pl) else int(pl.max()) + 1
    nodes = None if tree is None else np.concatenate([tree["nodes"], tree["root"][None]])
    return dict(labels=lab, super=sup, palette=disk_palette(lab, sup, class_super=cs, color_by=color_by, n=n),
                avoid=_stack(x2d, proxies2d, nodes), lim=geometry.view_limit(float(c), _stack(x2d, None, nodes)))


def _stack(*parts: Any) -> Optional[np.ndarray]:
    """The point sets ``parts`` (each reshaped to (n, 2)) in one (N, 2) array; None when there are none."""
    arrays = [geometry.as_numpy(p).reshape(-1, 2) for p in parts if p is not None]
    return np.concatenate(arrays) if arrays else None


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
    color_by: str = "super",
    class_super: Any = None,
    tree: Optional[dict] = None,
):
    """Points of the Poincaré disk of curvature ``-c``, proxies as large stars, and the class hierarchy.

    ``x2d`` (N, 2), ``labels`` (N,), ``super_labels`` (N,) or None, ``proxies2d`` (P, 2) with
    ``proxy_labels`` (P,) (default: ``K`` consecutive proxies per class, i.e. the ``(C, K, 2)``
    layout flattened). Colours (:func:`chestlab.viz.style.disk_palette`): ``color_by="super"`` (the
    default, when super-classes are known) -- one colour per super-class, each class a shade of it
    (``class_super`` (C,): the super-class of every class, so proxies of classes without points get
    theirs; else read off the points); ``color_by="class"`` -- one colour per class, the marker tells
    the super-classes apart. ``tree``: :func:`chestlab.viz.hierarchy.disk_tree_geometry`'s super-class
    nodes and root with their geodesics (:func:`chestlab.viz.plotly.add_tree`). The boundary circle
    has radius ``1/sqrt(c)`` (none at ``c = 0``, the Euclidean plane); ``grid`` adds geodesics;
    ``circles`` adds the sets of points at those Poincaré distances from the origin. Drawn by
    :mod:`chestlab.viz.plotly`."""
    import plotly.graph_objects as go

    from . import plotly as viz_plotly

    c = float(c)
    d = disk_layers(x2d, labels, super_labels, proxies2d, c=c, proxy_labels=proxy_labels, class_super=class_super,
                    color_by=color_by, tree=tree)
    palette = d["palette"]
    fig = go.Figure()
    viz_plotly.add_disk(fig, c, grid=grid, circles=circles, avoid=d["avoid"])  # first: points on top
    viz_plotly.add_embeddings(fig, x2d, d["labels"], d["super"], class_names=class_names, super_names=super_names,
                              marker_size=marker_size, palette=palette, color_by=color_by)
    if tree is not None:
        viz_plotly.add_tree(fig, tree, super_names, class_names=class_names, palette=palette, part="lines",
                            show_children=proxies2d is None)
    if proxies2d is not None:
        viz_plotly.add_proxies(fig, proxies2d, proxy_labels, class_names=class_names, palette=palette)
    if tree is not None:
        viz_plotly.add_tree(fig, tree, super_names, part="nodes")
    return viz_plotly.style_disk(fig, d["lim"], title=title, uirevision=uirevision, height=height)



def poincare_disk_mpl(x2d: Any, labels: Any, super_labels: Any = None, proxies2d: Any = None, *, c: float = 1.0,
                      circles: Sequence[float] = (), title: Optional[str] = None,
                      figsize: Optional[tuple[float, float]] = None, proxy_labels: Any = None, color_by: str = "super",
                      class_super: Any = None, tree: Optional[dict] = None):
    """Static (matplotlib) version of :func:`poincare_disk` (the same colours, proxies and ``tree``), for
    PNG/PDF. Drawn by :mod:`chestlab.viz.mpl`; font sizes come from matplotlib's settings and
    ``figsize`` (default 4.5 x 4.5 in) grows to the settings' figure width
    (:func:`chestlab.viz.style.use_lecture_style`: projector-sized)."""
    from matplotlib.figure import Figure

    from . import mpl as viz_mpl

    c = float(c)
    d = disk_layers(x2d, labels, super_labels, proxies2d, c=c, proxy_labels=proxy_labels, class_super=class_super,
                    color_by=color_by, tree=tree)
    palette = d["palette"]
    fig = Figure(figsize=figsize or fit_figsize((4.5, 4.5), keep_aspect=False), dpi=150, layout="constrained")
    ax = fig.subplots()
    viz_mpl.draw_disk(ax, c, circles=circles, avoid=d["avoid"])
    viz_mpl.scatter_embeddings(ax, x2d, d["labels"], d["super"], palette=palette, color_by=color_by)
    if proxies2d is not None:
        viz_mpl.scatter_proxies(ax, proxies2d, proxy_labels, palette=palette)
    if tree is not None:
        viz_mpl.draw_tree(ax, tree)
    viz_mpl.style_disk(ax, d["lim"], title=title)
    return fig


def disk_legend(fig: Any, class_names: Sequence[str], super_names: Optional[Sequence[str]] = None,
                classes: Optional[Sequence[int]] = None) -> Any:
    """Make the legend of a :func:`poincare_disk` figure say which colour is which
    class: a legend-only entry per class (``classes``: the class indices to list, default all of
    ``class_names``) in the colour its points have (a shade of its super-class's colour, or its own
    colour with ``color_by="class"``), beside the figure's own entries per super-class; the legend
    moves to the right of the disk. The points and their hover texts are unchanged. Returns ``fig``."""
    import plotly.graph_objects as go

    from .style import PLOTLY_SYMBOLS, class_color

    supers = [t for t in fig.data if t.type == "scattergl"]
    seen: dict[str, str] = {}  # class name -> the colour its points are drawn in
    for t in supers:
        t.showlegend = False
        if t.text is not None and not isinstance(t.marker.color, str):
            for col, name in zip(t.marker.color, t.text):
                seen.setdefault(str(name), col)
    for i in (range(len(class_names)) if classes is None else classes):
        name = str(class_names[i])
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup="classes",
                                 legendgrouptitle_text="class",
                                 marker=dict(color=seen.get(name, class_color(i)), size=11, symbol="circle")))
    has_supers = any(t.type == "scatter" and str(t.legendgroup or "").startswith("super") for t in fig.data)
    if super_names is not None and len(supers) > 1 and not has_supers:  # a figure without its own entries
        for k, t in enumerate(supers):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=t.name, legendgroup="supers",
                                     legendgrouptitle_text="super-class",
                                     marker=dict(color="#7f7f7f", size=11, symbol=PLOTLY_SYMBOLS[k % len(PLOTLY_SYMBOLS)])))
    # one column to the right of the disk: grouped entries below the disk would cover the x axis title
    fig.update_layout(legend=dict(orientation="v", x=1.02, xanchor="left", y=0.5, yanchor="middle", groupclick="toggleitem"))
    return fig
