"""Plotly backend: draws what :mod:`chestlab.viz.geometry` computes on a :class:`plotly.graph_objects.Figure`.

Circles centred at the origin (the boundary, the distance circles) are plotly ``circle`` shapes, exact
at any zoom; every other curve is a polyline. Each function adds to ``fig`` and returns it.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from . import geometry
from .style import (COLORS, FONT_SIZE, PLOTLY_SYMBOLS, class_color, crowd_size, disk_palette, name_of, plotly_font_size,
                    plotly_scale, short_names, super_color)

__all__ = ["lines_xy", "polyline_trace", "add_polylines", "add_disk", "note_to_axis_title", "circle_label", "add_embeddings", "super_legend",
           "add_proxies", "add_tree",
           "style_disk"]


def lines_xy(lines: Sequence[np.ndarray]) -> tuple[list, list]:
    """``lines`` ((n, 2) arrays) as the ``x``, ``y`` lists of one plotly trace, polylines separated by ``None``."""
    xs: list = []
    ys: list = []
    for p in lines:
        xs += p[:, 0].tolist() + [None]
        ys += p[:, 1].tolist() + [None]
    return xs, ys


def polyline_trace(lines: Sequence[np.ndarray], *, name: Optional[str] = None, color: str = "black",
                   width: float = 1.0, dash: Optional[str] = None, showlegend: bool = False, **trace: Any) -> dict:
    """All ``lines`` ((n, 2) arrays) as one ``lines`` trace, a dict (:func:`lines_xy`); ``trace``: more
    of the trace's properties (``legendgroup``, ``opacity``...)."""
    xs, ys = lines_xy(lines)
    return dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=color, width=width, dash=dash), name=name,
                showlegend=showlegend, hoverinfo="skip", **trace)


def add_polylines(fig: go.Figure, lines: Sequence[np.ndarray], **kw: Any) -> go.Figure:
    """:func:`polyline_trace` added to ``fig``."""
    fig.add_traces([polyline_trace(lines, **kw)])
    return fig


def add_disk(fig: go.Figure, c: float, *, grid: bool = False, circles: Sequence[float] = (), n_diameters: int = 6,
             grid_dists: Sequence[float] = (1.0, 2.0, 3.0), label_angle: Optional[float] = None,
             avoid: Any = None, compact: bool = True) -> go.Figure:
    """The disk of curvature ``-c`` behind the data: boundary (radius ``1/sqrt(c)``, none at ``c = 0``),
    the :func:`~chestlab.viz.geometry.geodesic_grid` (trace ``"geodesics"``) when ``grid``, and a
    dotted circle labelled ``d_H = d`` at each Poincaré distance ``d`` of ``circles`` from the origin,
    the labels where :func:`~chestlab.viz.geometry.circle_label_points` puts them (``label_angle``:
    the first one's angle in degrees, default between two diameters; ``avoid``: points (N, 2) they
    should not cover; ``compact``: labels that would touch count as overlapping, for a disk as small as
    the dashboard's compare columns', :func:`~chestlab.viz.geometry.circle_label_plan`)."""
    R = geometry.disk_radius(c)
    if math.isfinite(R):
        fig.add_shape(type="circle", x0=-R, y0=-R, x1=R, y1=R, line=dict(color=COLORS["boundary"], width=2),
                      layer="below")
    if grid:
        add_polylines(fig, geometry.geodesic_grid(c, n_diameters, grid_dists), name="geodesics",
                      color=COLORS["grid"], width=1, showlegend=True)
    labels_at = geometry.circle_label_plan(c, circles, n_diameters, label_angle=label_angle, avoid=avoid, compact=compact)
    for d, spot in zip(circles, labels_at):
        r = geometry.euclid_radius(float(d), c)
        fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color=COLORS["circle"], width=1, dash="dot"),
                      layer="below")
        if spot is None:  # no room clear of the data and the other labels: named in the corner note
            continue
        # on a white box, between two diameters of the grid (geometry.circle_label_points); no fixed
        # size: the layout's (or the template's) font size, like the rest of the figure
        fig.add_annotation(x=spot[0], y=spot[1], text=circle_label(d), showarrow=False, font=dict(color=COLORS["circle_label"]),
                           bgcolor="rgba(255,255,255,0.85)", borderpad=2)
    unlabelled = geometry.circle_note(circles, labels_at)
    if unlabelled:
        # bottom left: a corner of the square view outside the disk, where no point lies
        fig.add_annotation(x=0.0, y=0.0, xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                           text=circle_note_text(unlabelled), font=dict(color=COLORS["circle_label"]),
                           bgcolor="rgba(255,255,255,0.85)", borderpad=2)
    return fig


def note_to_axis_title(fig: go.Figure) -> go.Figure:
    """``fig`` with the corner note of :func:`add_disk` ("dotted: d_H = 1, 2, 3") moved into the x axis
    title ("x₁ · dotted: d_H = 1, 2, 3"), where it meets neither the data nor a tick label nor a circle's
    label: the note's corner is the plot area's, which, left of a square view narrower than the plot
    (``constrain="domain"``), lies over the y axis's tick labels, and on a disk ~185 px across (a compare
    column) the note is wider than the corner outside the disk and covers points near the boundary.
    Idempotent; a figure without the note is returned unchanged."""
    anns = list(fig.layout.annotations)
    is_note = [str(a.text or "").startswith("dotted:") and a.xref == "paper" for a in anns]
    if not any(is_note):
        return fig
    notes = [a for a, n in zip(anns, is_note) if n]
    fig.layout.annotations = [a for a, n in zip(anns, is_note) if not n]
    title = fig.layout.xaxis.title.text or ""
    fig.update_xaxes(title_text=" · ".join([t for t in (title, *(str(a.text) for a in notes)) if t]))
    return fig


def circle_note_text(circles: Sequence[float]) -> str:
    """The corner note naming the dotted circles that have no label of their own: ``dotted: d_H = 1, 2, 3``."""
    return "dotted: <i>d</i><sub>H</sub> = " + ", ".join(f"{d:g}" for d in circles)


def circle_label(d: float) -> str:
    """The label of the distance circle at Poincaré distance ``d`` from 0: ``d_H = d`` (HTML)."""
    return f"<i>d</i><sub>H</sub> = {d:g}"


def add_embeddings(fig: go.Figure, x2d: Any, labels: Any, super_labels: Any = None, *,
                   class_names: Optional[Sequence[str]] = None, super_names: Optional[Sequence[str]] = None,
                   marker_size: int = 6, palette: Optional[Sequence[str]] = None, color_by: str = "super",
                   class_super: Any = None) -> go.Figure:
    """Points ``x2d`` (N, 2) of classes ``labels`` (N,) and super-classes ``super_labels`` (N,) (all one
    when None): one WebGL trace per super-class (legend group ``super<s>``), and one legend entry per
    super-class (:func:`super_legend`). Colours: ``palette[class]``, by default
    :func:`~chestlab.viz.style.disk_palette` -- the super-class's colour, each class a shade of it
    (``color_by="super"``; ``class_super`` (C,) the super-class of each class, else read off the
    points), or one colour per class with the marker telling the super-classes apart
    (``color_by="class"``)."""
    x = geometry.as_numpy(x2d).reshape(-1, 2)
    y = geometry.as_numpy(labels).astype(int).reshape(-1)
    s = np.zeros_like(y) if super_labels is None else geometry.as_numpy(super_labels).astype(int).reshape(-1)
    if palette is None:
        palette = disk_palette(y, None if super_labels is None else s, color_by=color_by,
                               class_super=None if class_super is None else geometry.as_numpy(class_super).reshape(-1))
    by_super = color_by == "super" and (super_labels is not None or class_super is not None)
    supers = np.unique(s)
    traces = []  # added at once: plotly validates a list of dicts faster than trace by trace
    for k, sup in enumerate(supers):
        m = s == sup
        traces.append(dict(
            type="scattergl", x=x[m, 0], y=x[m, 1], mode="markers", name=name_of(int(sup), super_names, "super-class"),
            legendgroup=f"super{int(sup)}", showlegend=False,
            marker=dict(color=[palette[i] for i in y[m]], size=marker_size,
                        symbol="circle" if by_super else PLOTLY_SYMBOLS[k % len(PLOTLY_SYMBOLS)], opacity=0.8,
                        line=dict(width=0)),
            text=[name_of(int(i), class_names, "class") for i in y[m]],
            hovertemplate="%{text}<extra>%{fullData.name}</extra>",
        ))
    if super_labels is not None or len(supers) > 1:
        traces += super_legend([int(v) for v in supers], super_names, by_super=by_super)
    fig.add_traces(traces)
    return fig


def super_legend(supers: Sequence[int], super_names: Optional[Sequence[str]] = None, *,
                 by_super: bool = True) -> list[dict]:
    """One legend-only entry (a trace dict) per super-class in ``supers``, in its legend group
    ``super<s>`` (a click hides or shows the super-class's points): a circle in
    :func:`~chestlab.viz.style.super_color` (``by_super``), else a grey marker of the super-class's
    shape. The points' own traces carry their classes' shades, which a legend entry cannot show."""
    return [dict(type="scatter", x=[None], y=[None], mode="markers", name=name_of(int(sup), super_names, "super-class"),
                 legendgroup=f"super{int(sup)}",
                 marker=dict(color=super_color(int(sup)) if by_super else COLORS["mixed"], size=10,
                             symbol="circle" if by_super else PLOTLY_SYMBOLS[k % len(PLOTLY_SYMBOLS)]))
            for k, sup in enumerate(supers)]


def add_proxies(fig: go.Figure, proxies: Any, proxy_labels: Any = None, *,
                class_names: Optional[Sequence[str]] = None, palette: Optional[Sequence[str]] = None) -> go.Figure:
    """Proxies (C, K, 2) or (P, 2) (see :func:`~chestlab.viz.geometry.proxy_points`) as stars in their
    class's colour (``palette[class]``, default :func:`~chestlab.viz.style.class_color`), one trace
    ``"proxies (train classes)"``; large, smaller when there are many
    (:func:`~chestlab.viz.style.crowd_size`: 256 proxies do not hide the points)."""
    p, pl = geometry.proxy_points(proxies, proxy_labels)
    color = (lambda i: palette[i] if palette is not None and 0 <= i < len(palette) else class_color(i))
    name = "proxies (train classes)"
    fig.add_traces([dict(
        type="scatter", x=p[:, 0], y=p[:, 1], mode="markers", name=name, legendgroup="proxies", showlegend=False,
        # many proxies: smaller, lighter, without the dark rims that together would hide everything else
        marker=dict(symbol="star", size=crowd_size(len(p), 14, full=64, least=8), color=[color(int(i)) for i in pl],
                    opacity=1.0 if len(p) <= 64 else 0.8,
                    line=dict(color=COLORS["proxy_edge"] if len(p) <= 64 else "white", width=1 if len(p) <= 64 else 0.5)),
        text=[f"proxy of {name_of(int(i), class_names, 'class')}" for i in pl], hovertemplate="%{text}<extra></extra>",
    ), dict(  # the legend's star is white: the proxies are in their classes' colours, which one entry cannot show
        type="scatter", x=[None], y=[None], mode="markers", name=name, legendgroup="proxies",
        marker=dict(symbol="star", size=14, color="white", line=dict(color=COLORS["proxy_edge"], width=1)))])
    return fig


def add_tree(fig: go.Figure, tree: dict, super_names: Optional[Sequence[str]] = None, *,
             class_names: Optional[Sequence[str]] = None, palette: Optional[Sequence[str]] = None,
             show_children: bool = False, part: str = "all") -> go.Figure:
    """The class hierarchy of :func:`chestlab.viz.hierarchy.disk_tree_geometry` over a disk figure, in
    the legend group ``tree`` (one click on its legend entries hides it). ``part="lines"``: thin
    geodesics from each super-class node to its children (in the super-class's colour) and thicker
    dark ones from the root to the nodes; ``part="nodes"``: the nodes as large diamonds in their
    super-class's colour, the root as a black square (each hover gives its :math:`d_H(0, \\cdot)`),
    and their legend entries; ``"all"``: both (lines first). ``show_children``: the lines' part also
    marks the children (the class means when there are no proxies to show them; ``palette[class]``
    colours them)."""
    traces = []
    if part in ("all", "lines"):
        traces += _tree_lines(tree, class_names, palette, show_children)
    if part in ("all", "nodes"):
        traces += _tree_nodes(tree, super_names)
    fig.add_traces(traces)
    return fig


def _tree_lines(tree: dict, class_names: Optional[Sequence[str]], palette: Optional[Sequence[str]],
                show_children: bool) -> list[dict]:
    what = tree["children_are"]
    faint = 0.55 * min(1.0, math.sqrt(64 / max(len(tree["child_lines"]), 1)))  # many lines: each fainter
    out = [polyline_trace([p for gg, p in tree["child_lines"] if gg == g], name=f"{what} → node", color=super_color(g),
                          width=1, opacity=max(faint, 0.25), legendgroup="tree") for g in (int(v) for v in tree["groups"])]
    out.append(polyline_trace(tree["root_lines"], name="node → root", color=COLORS["root"], width=2, legendgroup="tree"))
    if show_children:
        one = what[:-1] if what.endswith("s") else what
        ch, cc = tree["children"], tree["child_class"]
        out.append(dict(  # WebGL, as the nodes below: an SVG marker would sit under the points' canvas
            type="scattergl", x=ch[:, 0], y=ch[:, 1], mode="markers", name=what, legendgroup="tree", showlegend=False,
            marker=dict(symbol="circle", size=9, line=dict(color=COLORS["proxy_edge"], width=1),
                        color=[palette[int(k)] if palette is not None and 0 <= int(k) < len(palette) else COLORS["mixed"]
                               for k in cc]),
            text=[f"{one} of {name_of(int(k), class_names, 'class')}" for k in cc], hovertemplate="%{text}<extra></extra>"))
    return out


def _tree_nodes(tree: dict, super_names: Optional[Sequence[str]]) -> list[dict]:
    groups = [int(g) for g in tree["groups"]]
    nodes, r = tree["nodes"], tree["root"]
    short = short_names(super_names)  # "A".."D" inside the diamonds, when the names are that short
    inside = None if short is None else [short[g] if g < len(short) else "" for g in groups]
    labels = dict(mode="markers") if inside is None else dict(
        mode="markers+text", customdata=inside, texttemplate="%{customdata}", textposition="middle center",
        textfont=dict(color="white", size=10))
    size = 16 if inside is None else 19
    # WebGL traces: Plotly draws them on a canvas above every SVG trace, so SVG nodes would sit under
    # the samples (add_embeddings' scattergl) near the origin, where the nodes are at the start
    out = [
        # a white halo under each node and the root: they stay visible in a crowd of proxies
        dict(type="scattergl", x=[*nodes[:, 0], r[0]], y=[*nodes[:, 1], r[1]], mode="markers", name="halo",
             legendgroup="tree", showlegend=False, hoverinfo="skip",
             marker=dict(symbol=["diamond"] * len(nodes) + ["square"], size=[size + 6] * len(nodes) + [18],
                         color="white", opacity=0.85, line=dict(width=0))),
        dict(type="scattergl", x=nodes[:, 0], y=nodes[:, 1], name="super-class nodes", legendgroup="tree", showlegend=False,
             marker=dict(symbol="diamond", size=size, color=[super_color(g) for g in groups],
                         line=dict(color=COLORS["root"], width=1.5)),
             text=[f"{name_of(g, super_names, 'super-class')}: the gyro-midpoint of its {tree['children_are']}, "
                   f"d_H(0, ·) = {d:.2f}" for g, d in zip(groups, tree["node_depth"])],
             hovertemplate="%{text}<extra></extra>", **labels),
        dict(type="scattergl", x=[r[0]], y=[r[1]], mode="markers", name="root", legendgroup="tree", showlegend=False,
             marker=dict(symbol="square", size=13, color=COLORS["root"], line=dict(color="white", width=1.5)),
             text=[f"root: the gyro-midpoint of the super-class nodes, d_H(0, root) = {tree['root_depth']:.2f}"],
             hovertemplate="%{text}<extra></extra>"),
    ]
    # what the shapes are: legend-only entries in the group, so a click on either hides the whole tree
    for name, sym, color, edge in (("super-class nodes", "diamond", "white", COLORS["root"]),
                                   ("root", "square", COLORS["root"], "white")):
        out.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=name, legendgroup="tree",
                        marker=dict(symbol=sym, size=11, color=color, line=dict(color=edge, width=1.5))))
    return out


def style_disk(fig: go.Figure, lim: float, *, title: Optional[str] = None, uirevision: str = "disk",
               height: int = 520) -> go.Figure:
    """Square view ``[-lim, lim]^2`` with equal aspect, axes labelled ``x₁``, ``x₂`` (the disk's
    coordinates), projector-sized fonts, legend below; ``uirevision`` keeps the user's zoom on rebuilds."""
    fs, small, k = plotly_font_size(FONT_SIZE), plotly_font_size(FONT_SIZE - 2), plotly_scale()  # lecture: larger
    axis = dict(range=[-lim, lim], showgrid=False, zeroline=False, ticks="outside", title_font_size=fs,
                tickfont_size=small)
    fig.update_xaxes(title_text="x₁", constrain="domain", **axis)
    fig.update_yaxes(title_text="x₂", scaleanchor="x", scaleratio=1, **axis)
    fig.update_layout(title=title, uirevision=uirevision, height=int(round(height * (1 + (k - 1) / 2))),
                      plot_bgcolor="white", font_size=fs, margin=dict(l=10, r=10, t=int((50 if title else 10) * k), b=10),
                      # far enough below the plot that a legend wrapped in a narrow column clears the x axis title
                      legend=dict(font=dict(size=small), itemsizing="constant", orientation="h", yanchor="top",
                                  y=-0.2, x=0.5, xanchor="center"))
    return fig
