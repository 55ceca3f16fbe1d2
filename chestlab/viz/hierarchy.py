r"""Hierarchy figures: a dendrogram decoded from points of the ball beside the true class
hierarchy, and HIER's hierarchical proxies in the Poincaré disk with their ancestor lines (HIER's
Fig. 3).

Geometry first, drawing second, as in the rest of :mod:`chestlab.viz`:

* :func:`dendrogram_geometry` -- the link polylines of a scipy linkage matrix
  (``scipy.cluster.hierarchy.dendrogram(no_plot=True)``), each link coloured by the super-class of
  its leaves when they all share one (grey when the link joins several super-classes), and the
  leaves' positions and colours; :func:`true_linkage` -- the linkage matrix of a known
  :class:`~chestlab.hierarchy.Hierarchy` (merge height = LCA height in levels).
* :func:`hier_disk_geometry` -- the hierarchical proxies, the class proxies (or class means) and a
  sample of the data projected to the disk with one projection (tangent PCA fitted on the data,
  :func:`chestlab.viz.geometry.project_to_disk`), and the geodesics child -> parent drawn in the
  ball (:func:`~chestlab.viz.geometry.geodesic_arcs`) and projected with them.
* :func:`disk_tree_geometry` -- the class hierarchy in the disk panel: super-class nodes and the root
  (gyro-midpoints) with geodesics to their children, and the mean :math:`d_H(0, \cdot)` per level.
* :func:`dendrogram_figure`, :func:`hier_disk_figure` -- draw them (plotly, the dashboard);
  :func:`draw_dendrogram_mpl` -- a dendrogram on a matplotlib ``Axes`` (the lessons).

Colours: super-class ``g`` is :func:`chestlab.viz.style.class_color` ``(g)``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform

from .. import poincare
from . import geometry
from .geometry import geodesic_arcs
from .style import COLORS, FONT_SIZE, crowd_size, super_color
from .plotly import circle_label, circle_note_text, lines_xy

__all__ = ["MIXED", "LEVELS", "true_linkage", "dendrogram_geometry", "hier_disk_geometry", "disk_tree_geometry",
           "dendrogram_figure",
           "hier_disk_figure", "draw_dendrogram_mpl"]

#: Colour of a link that joins leaves of several super-classes.
MIXED = COLORS["mixed"]


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------
def true_linkage(hierarchy: Any, leaf_classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """The known hierarchy as a scipy linkage matrix over ``leaf_classes`` (default: every class once).

    Merge heights are LCA heights in levels (:meth:`~chestlab.hierarchy.Hierarchy.lca_height`: 1 =
    siblings, ``depth`` = the root). Those distances are an ultrametric, so average linkage on them
    gives back exactly the tree."""
    cls = np.arange(hierarchy.num_classes) if leaf_classes is None else np.asarray(leaf_classes, dtype=np.int64)
    heights = hierarchy.lca_height(cls[:, None], cls[None, :]).astype(np.float64)
    np.fill_diagonal(heights, 0.0)
    return sch.linkage(squareform(heights, checks=False), method="average")


def dendrogram_geometry(Z: Any, leaf_groups: Sequence[int], *, leaf_text: Optional[Sequence[str]] = None) -> dict:
    """What a dendrogram draws, from a linkage matrix ``Z`` ((n - 1, 4)) and the super-class of each
    leaf (``leaf_groups``, (n,) ints).

    Returns ``{"links": [(colour, [(4, 2) polylines])...], "leaf_x": (n,), "leaf_color": [n colours],
    "leaf_group": (n,), "leaf_text": [n str], "order": (n,) leaf indices left to right,
    "height": max merge height}``. Leaves sit at ``x = 5, 15, 25, ...`` (scipy's layout) in ``order``;
    a link's colour is its super-class's when every leaf below it belongs to that super-class, else
    :data:`MIXED`."""
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] + 1
    groups = np.asarray(leaf_groups, dtype=np.int64).reshape(-1)
    if groups.shape[0] != n:
        raise ValueError(f"leaf_groups must have one entry per leaf (n = {n}), got {groups.shape[0]}")
    # the super-class of every cluster (-1 = mixed): leaves, then merge k -> cluster n + k
    cluster = np.empty(2 * n - 1, dtype=np.int64)
    cluster[:n] = groups
    for k, (a, b, _, _) in enumerate(Z):
        ga, gb = cluster[int(a)], cluster[int(b)]
        cluster[n + k] = ga if ga == gb else -1

    def color(k: int) -> str:
        g = int(cluster[k])
        return super_color(g) if g >= 0 else MIXED

    d = sch.dendrogram(Z, no_plot=True, link_color_func=color)
    by_color: dict[str, list[np.ndarray]] = {}
    for xs, ys, col in zip(d["icoord"], d["dcoord"], d["color_list"]):
        by_color.setdefault(col, []).append(np.column_stack([xs, ys]))
    order = np.asarray(d["leaves"], dtype=np.int64)
    text = [str(i) for i in order] if leaf_text is None else [str(leaf_text[i]) for i in order]
    return {
        "links": sorted(by_color.items(), key=lambda kv: kv[0] == MIXED),
        "leaf_x": 5.0 + 10.0 * np.arange(n),
        "leaf_group": groups[order],
        "leaf_color": [super_color(int(g)) for g in groups[order]],
        "leaf_text": text,
        "order": order,
        "height": float(Z[:, 2].max()) if len(Z) else 0.0,
    }


def _rows(x: Any) -> torch.Tensor:
    t = torch.as_tensor(geometry.as_numpy(x), dtype=torch.float64)
    return t.reshape(-1, t.shape[-1])


def _with_ancestors(nodes: Any, parent: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: the proxies in ``nodes`` and every ancestor of theirs (``parent``: -1 = root)."""
    keep = np.zeros(len(parent), dtype=bool)
    todo = list(np.unique(np.asarray(nodes, dtype=np.int64)))
    while todo:
        i = int(todo.pop())
        if 0 <= i < len(parent) and not keep[i]:
            keep[i] = True
            todo.append(int(parent[i]))
    return keep


def hier_disk_geometry(hier_h: Any, proxy_parent: Any, c: float, *, x_h: Any, x_groups: Sequence[int],
                       anchors_h: Any, anchor_groups: Sequence[int], n_line: int = 24, prune: bool = True) -> dict:
    r"""HIER's Fig. 3 as points and polylines of the disk.

    ``hier_h`` (P, D): the hierarchical proxies; ``proxy_parent`` (P,): each one's parent proxy
    (``-1``: the root), :func:`chestlab.losses.hier.hier_parents`. ``anchors_h`` (A, D): the points
    hung under them -- the class proxies (or class means) -- of super-class ``anchor_groups``; each is
    linked to its nearest hierarchical proxy (its LCA as a group of one). ``x_h`` (N, D): data drawn
    faintly behind, super-class ``x_groups``.

    ``prune`` (default): only the hierarchical proxies that carry an anchor -- the nearest one of some
    anchor, and its ancestors up to the root -- are ``"shown"`` and linked; the others (no class below
    them) are left out of the picture, which stays readable with many proxies.

    Every line is the geodesic of the ball (``n_line`` points, :func:`chestlab.viz.geometry.geodesic_arc`)
    projected like the points: one tangent-PCA projection fitted on ``x_h`` for everything, so for
    ``D = 2`` the picture is exact. Returns ``{"hier": (P, 2), "root": bool (P,), "depth": (P,)
    d_H(0, proxy), "shown": bool (P,), "anchors": (A, 2), "anchor_group": (A,), "x": (N, 2), "x_group":
    (N,), "tree_lines": [a polyline per shown non-root proxy], "anchor_lines": [(group, polyline)...],
    "anchor_parent": (A,), "c": c}``."""
    c = float(c)
    h, a, x = _rows(hier_h), _rows(anchors_h), _rows(x_h)
    parent = np.asarray(geometry.as_numpy(proxy_parent), dtype=np.int64).reshape(-1)
    with torch.no_grad():
        a_parent = poincare.pairwise_dist(a, h, c).argmin(1).numpy() if len(a) else np.zeros(0, np.int64)
        shown = _with_ancestors(a_parent, parent) if prune else np.ones(len(parent), dtype=bool)
        child = np.flatnonzero((parent >= 0) & shown)
        tree = geodesic_arcs(h[child], h[parent[child]], c, n_line)
        hang = geodesic_arcs(a, h[a_parent], c, n_line)
        depth = poincare.dist0(h, c).numpy()
    lines = [*tree, *hang]
    D = h.shape[-1]
    stack = torch.cat([h, a, x, torch.as_tensor(tree).reshape(-1, D), torch.as_tensor(hang).reshape(-1, D)])
    xy = geometry.project_to_disk(stack, c, fit_on=x if len(x) >= 3 else None)
    P, A, N = len(h), len(a), len(x)
    pts, rest = xy[: P + A + N], xy[P + A + N :]
    polys = [rest[i * n_line : (i + 1) * n_line] for i in range(len(lines))]
    ag = np.asarray(anchor_groups, dtype=np.int64).reshape(-1)
    return {
        "hier": pts[:P], "root": parent < 0, "depth": depth, "shown": shown, "anchors": pts[P : P + A], "anchor_group": ag,
        "x": pts[P + A :], "x_group": np.asarray(x_groups, dtype=np.int64).reshape(-1),
        "tree_lines": polys[: len(tree)], "anchor_lines": list(zip(ag.tolist(), polys[len(tree) :])),
        "anchor_parent": a_parent, "c": c,
    }


#: the levels of :func:`disk_tree_geometry`'s ``"depth"``, coarse to fine
LEVELS = ("root", "super-classes", "classes", "samples")


def disk_tree_geometry(x_h: Any, labels: Any, class_super: Sequence[int], c: float, *, proxies_h: Any = None,
                       n_line: int = 16) -> Optional[dict]:
    r"""The class hierarchy in the disk: a node per super-class and the root, with geodesics to their
    children, so that "coarse near the origin, fine near the boundary" can be seen.

    Children of super-class ``s``: the proxies ``proxies_h`` ((C, K, D) or (C, D)) of its classes,
    all ``K`` of each; without proxies, its classes' means (:func:`chestlab.hierarchy.class_means`,
    the gyro-midpoint) of the samples ``x_h`` (N, D) with class ``labels`` (N,).
    ``class_super`` (C,): each class's super-class (``-1``: none; such children hang under no node).
    The nodes are gyro-midpoints (:func:`chestlab.poincare.weighted_midpoint`, equal weights):

    .. math:: n_s = \operatorname{mid}_c\{p : p 	ext{ a child of } s\}, \qquad
              
ho = \operatorname{mid}_c\{n_s\}_s,

    so the root :math:`
ho` is where the super-class nodes' midpoint lies (each super-class counts
    once), not the origin: how far it is from 0 is part of the picture. Every point and line is
    projected like the disk panel's samples (:func:`chestlab.viz.geometry.project_to_disk` fitted on
    ``x_h``; exact for ``D = 2``); the lines are geodesics of the ball (:func:`~chestlab.viz.geometry.geodesic_arcs`, ``n_line``
    points) projected with them. ``"depth"`` is measured in the ball, not in the picture: the mean
    :math:`d_H(0, \cdot)` of each of :data:`LEVELS` (root, super-class nodes, the children, samples).

    Returns ``{"root": (2,), "nodes": (S, 2), "groups": (S,) their super-class ids, "children": (M, 2),
    "child_class": (M,), "child_group": (M,), "root_lines": [S polylines], "child_lines": [(group,
    polyline)...], "node_depth": (S,), "root_depth": float, "depth": {level: mean d_H(0, .)},
    "children_are": "proxies" | "class means"}``, or None when there is no child with a super-class."""
    from .. import hierarchy

    c = float(c)
    x = _rows(x_h)
    D = x.shape[-1]
    cs = np.asarray(class_super, dtype=np.int64).reshape(-1)
    if proxies_h is not None:
        p = torch.as_tensor(geometry.as_numpy(proxies_h), dtype=torch.float64)
        p = p.reshape(p.shape[0], -1, D)
        kids, kid_class, what = p.reshape(-1, D), np.repeat(np.arange(p.shape[0]), p.shape[1]), "proxies"
    else:
        lab = np.asarray(geometry.as_numpy(labels), dtype=np.int64).reshape(-1)
        if len(lab) == 0:
            return None
        kids, ids = hierarchy.class_means(x, lab, c)
        kid_class, what = ids.numpy(), "class means"
    kid_group = np.r_[cs, -1][np.where(kid_class < len(cs), kid_class, len(cs))]  # -1 past the table's end
    groups = np.unique(kid_group[kid_group >= 0])
    if len(groups) == 0:
        return None
    hung = np.flatnonzero(kid_group >= 0)
    with torch.no_grad(), poincare.checks(False):
        nodes = torch.stack([poincare.weighted_midpoint(kids[torch.as_tensor(kid_group == s)], None, c) for s in groups])
        root = poincare.weighted_midpoint(nodes, None, c)
        slot = np.searchsorted(groups, kid_group[hung])  # each hung child's node
        root_lines = geodesic_arcs(root.expand(len(nodes), D), nodes, c, n_line)
        kid_lines = geodesic_arcs(nodes[torch.as_tensor(slot)], kids[torch.as_tensor(hung)], c, n_line)
        node_depth = poincare.dist0(nodes, c).numpy()
        root_depth = float(poincare.dist0(root, c))
        depth = {"root": root_depth, "super-classes": float(node_depth.mean()),
                 "classes": float(poincare.dist0(kids, c).mean()),
                 "samples": float(poincare.dist0(x, c).mean()) if len(x) else float("nan")}
    S, M = len(nodes), len(kids)
    stack = torch.cat([root[None], nodes, kids, torch.as_tensor(root_lines).reshape(-1, D),
                       torch.as_tensor(kid_lines).reshape(-1, D)])
    xy = geometry.project_to_disk(stack, c, fit_on=x if len(x) else None)
    lines = xy[1 + S + M:].reshape(-1, n_line, 2)
    return {
        "root": xy[0], "nodes": xy[1 : 1 + S], "groups": groups, "children": xy[1 + S : 1 + S + M],
        "child_class": kid_class, "child_group": kid_group, "root_lines": list(lines[:S]),
        "child_lines": list(zip(kid_group[hung].tolist(), lines[S:])), "node_depth": node_depth,
        "root_depth": root_depth, "depth": depth, "children_are": what,
    }


# ------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------
def _plural(word: str) -> str:
    if word.endswith("y"):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x")) else "s")


def _dendrogram_traces(g: dict, axis: str, group_names: Sequence[str], *, legend: bool, what: str) -> list[dict]:
    """The traces of one dendrogram (plain dicts, validated once by the figure): one line trace per
    link colour, one marker trace of leaves per super-class."""
    yaxis = axis.replace("x", "y")
    out: list[dict] = []
    for color, polys in g["links"]:
        xs, ys = lines_xy(polys)
        out.append(dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=color, width=2), hoverinfo="skip",
                        showlegend=False, xaxis=axis, yaxis=yaxis))
    groups = g["leaf_group"]
    for s in np.unique(groups):
        m = groups == s
        name = group_names[int(s)] if int(s) < len(group_names) else f"super-class {int(s)}"
        out.append(dict(
            type="scatter", x=g["leaf_x"][m], y=np.zeros(int(m.sum())), mode="markers", name=name,
            legendgroup=f"super{int(s)}", showlegend=legend, xaxis=axis, yaxis=yaxis,
            marker=dict(color=super_color(int(s)), size=crowd_size(len(groups), 11, full=64, least=4),
                        line=dict(color="white", width=1 if len(groups) <= 64 else 0)),
            text=[t for t, k in zip(g["leaf_text"], m) if k], hovertemplate=f"%{{text}}<extra>{what} · {name}</extra>",
        ))
    return out


def dendrogram_figure(decoded: dict, true: dict, group_names: Sequence[str], *, left_title: str,
                      right_title: str = "the true hierarchy (classes)", left_y: str = "merge height",
                      right_y: str = "LCA height (levels)", leaves_what: str = "proxy", height: int = 430,
                      uirevision: str = "hier") -> Any:
    """The decoded dendrogram (left, axes ``x``/``y``) beside the true one (right, ``x2``/``y2``), leaves
    and pure links coloured by super-class (one legend entry per super-class), axes labelled, subplot
    titles as the first two annotations; from :func:`dendrogram_geometry`. Built as one dict (plotly
    validates it once: ~3x faster than ``make_subplots`` + updates)."""
    import plotly.graph_objects as go

    n_left, n_right = len(decoded["leaf_x"]), len(true["leaf_x"])
    gap = 0.08
    split = (1 - gap) * max(n_left, 8) / (max(n_left, 8) + max(n_right, 8))
    domains = ([0.0, split], [split + gap, 1.0])
    traces = (_dendrogram_traces(decoded, "x", group_names, legend=True, what=leaves_what)
              + _dendrogram_traces(true, "x2", group_names, legend=False, what="class"))
    layout: dict[str, Any] = dict(
        height=height, plot_bgcolor="white", font=dict(size=FONT_SIZE), uirevision=uirevision,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(title=dict(text="super-class"), font=dict(size=FONT_SIZE - 2), orientation="h", yanchor="top",
                    y=-0.14, x=0.5, xanchor="center"),
        annotations=[dict(text=title, x=sum(dom) / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
                          yanchor="bottom", showarrow=False, font=dict(size=FONT_SIZE + 1))
                     for title, dom in zip((left_title, right_title), domains)],
    )
    for k, (g, n, what, ytitle, dom) in enumerate(((decoded, n_left, leaves_what, left_y, domains[0]),
                                                   (true, n_right, "class", right_y, domains[1])), start=1):
        suffix = "" if k == 1 else str(k)
        top = max(g["height"], 1e-9) * 1.05
        layout[f"xaxis{suffix}"] = dict(
            domain=dom, anchor=f"y{suffix}", range=[0, 10 * n], showticklabels=False, ticks="", showgrid=False,
            zeroline=False, title=dict(text=f"{n} leaves ({_plural(what)})",  # colour: the legend ("super-class")
                                       font=dict(size=FONT_SIZE)))
        layout[f"yaxis{suffix}"] = dict(
            anchor=f"x{suffix}", range=[-0.04 * top, top], title=dict(text=ytitle, font=dict(size=FONT_SIZE)),
            tickfont=dict(size=FONT_SIZE - 2), gridcolor=COLORS["grid"], zeroline=False)
    return go.Figure(data=traces, layout=layout)


def hier_disk_figure(g: dict, group_names: Sequence[str], *, anchor_what: str = "class proxies",
                     height: int = 520, uirevision: str = "hierdisk", title: Optional[str] = None,
                     circles: Sequence[float] = (1.0, 2.0, 3.0, 4.0)) -> Any:
    """HIER's hierarchical proxies in the disk (from :func:`hier_disk_geometry`): the data faintly
    (colour = super-class), the class proxies / means as stars linked by a thin faint geodesic to
    their nearest hierarchical proxy, the hierarchical proxies ``"shown"`` (all, or those above a star)
    as diamonds (filled: the nearest one of some star; the root larger) linked to their parent by
    darker geodesics; the boundary and dotted
    circles at Poincaré distance ``circles`` from the origin, as the disk panel draws them; equal
    aspect, axes ``x₁``, ``x₂``. Built as one dict (validated once)."""
    import math

    import plotly.graph_objects as go

    c = g["c"]

    def gname(s: int) -> str:
        return group_names[s] if s < len(group_names) else f"super-class {s}"

    traces: list[dict] = []
    if len(g["x"]):
        traces.append(dict(type="scattergl", x=g["x"][:, 0], y=g["x"][:, 1], mode="markers", name="data",
                           marker=dict(color=[super_color(int(s)) for s in g["x_group"]], size=4, opacity=0.25),
                           hoverinfo="skip", showlegend=False))
    supers = np.unique(g["anchor_group"])
    for s in supers:
        xs, ys = lines_xy([p for gg, p in g["anchor_lines"] if gg == s])
        traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=super_color(int(s)), width=0.8),
                           opacity=0.45, hoverinfo="skip", showlegend=False, legendgroup=f"super{int(s)}"))
    xs, ys = lines_xy(g["tree_lines"])
    traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color="#333333", width=1.6), opacity=0.7,
                       hoverinfo="skip", name="hierarchical proxy → parent"))
    one = anchor_what[:-1] if anchor_what.endswith("s") else anchor_what
    for s in supers:
        m = g["anchor_group"] == s
        traces.append(dict(type="scatter", x=g["anchors"][m, 0], y=g["anchors"][m, 1], mode="markers",
                           name=gname(int(s)), legendgroup=f"super{int(s)}",
                           marker=dict(symbol="star", size=crowd_size(len(g["anchors"]), 13, full=64, least=7),
                                       color=super_color(int(s)),
                                       line=dict(color=COLORS["proxy_edge"], width=1)),
                           hovertemplate=f"{one} · {gname(int(s))}<extra></extra>"))
    used = np.zeros(len(g["hier"]), dtype=bool)
    used[np.asarray(g["anchor_parent"], dtype=np.int64)] = True
    shown = np.asarray(g.get("shown", np.ones(len(used), dtype=bool)), dtype=bool)
    idx = np.flatnonzero(shown)
    traces.append(dict(
        type="scatter", x=g["hier"][idx, 0], y=g["hier"][idx, 1], mode="markers", name="hierarchical proxies",
        # a white rim: overlapping diamonds near the origin stay apart
        marker=dict(symbol="diamond", size=[16 if g["root"][i] else 10 for i in idx],
                    color=["#333333" if used[i] else "white" for i in idx],
                    line=dict(color=["white" if used[i] else "#333333" for i in idx], width=1.2)),
        text=[f"hierarchical proxy {i}{' (root)' if g['root'][i] else ''} · d_H(0, ·) = {g['depth'][i]:.2f}"
              + (f" · the nearest of some {one}" if used[i] else "") for i in idx],
        hovertemplate="%{text}<extra></extra>"))
    shapes: list[dict] = []
    notes: list[dict] = []
    R = geometry.disk_radius(c)
    if math.isfinite(R):
        shapes.append(dict(type="circle", x0=-R, y0=-R, x1=R, y1=R, line=dict(color=COLORS["boundary"], width=2),
                           layer="below"))
        spots = geometry.circle_label_plan(c, circles, avoid=np.concatenate([g["hier"][shown], g["anchors"]]),
                                           compact=True)  # the dashboard's disk: labels that touch overlap
        for d, spot in zip(circles, spots):
            r = geometry.euclid_radius(float(d), c)
            shapes.append(dict(type="circle", x0=-r, y0=-r, x1=r, y1=r, layer="below",
                               line=dict(color=COLORS["circle"], width=1, dash="dot")))
            if spot is not None:  # else no room clear of the proxies and the other labels: in the corner note
                notes.append(dict(x=spot[0], y=spot[1], text=circle_label(d), showarrow=False, bgcolor="white",
                                  font=dict(size=FONT_SIZE - 2, color=COLORS["circle"])))
        unlabelled = geometry.circle_note(circles, spots)
        if unlabelled:
            notes.append(dict(x=0.0, y=0.0, xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                              text=circle_note_text(unlabelled), bgcolor="white",
                              font=dict(size=FONT_SIZE - 2, color=COLORS["circle"])))
    lim = geometry.view_limit(c, np.concatenate([g["hier"][shown], g["anchors"], g["x"]]))
    axis = dict(range=[-lim, lim], showgrid=False, zeroline=False, ticks="outside", tickfont=dict(size=FONT_SIZE - 2))
    layout = dict(
        title=dict(text=title) if title else None, uirevision=uirevision, height=height, plot_bgcolor="white",
        font=dict(size=FONT_SIZE), margin=dict(l=10, r=10, t=50 if title else 10, b=10), shapes=shapes,
        annotations=notes,
        xaxis=dict(axis, title=dict(text="x₁", font=dict(size=FONT_SIZE)), constrain="domain"),
        yaxis=dict(axis, title=dict(text="x₂", font=dict(size=FONT_SIZE)), scaleanchor="x", scaleratio=1),
        legend=dict(font=dict(size=FONT_SIZE - 2), itemsizing="constant", orientation="h", yanchor="top", y=-0.12,
                    x=0.5, xanchor="center"),
    )
    return go.Figure(data=traces, layout={k: v for k, v in layout.items() if v is not None})


def draw_dendrogram_mpl(ax: Any, g: dict, group_names: Sequence[str], *, title: Optional[str] = None,
                        ylabel: str = "merge height", leaves_what: str = "proxy") -> Any:
    """The same dendrogram on a matplotlib ``Axes`` (the lessons): links from
    :func:`dendrogram_geometry` in their colours, leaves as dots coloured by super-class, one legend
    entry per super-class; returns ``ax``."""
    for color, polys in g["links"]:
        for p in polys:
            ax.plot(p[:, 0], p[:, 1], color=color, lw=1.8)
    groups = g["leaf_group"]
    for s in np.unique(groups):
        m = groups == s
        name = group_names[int(s)] if int(s) < len(group_names) else f"super-class {int(s)}"
        ax.scatter(g["leaf_x"][m], np.zeros(int(m.sum())), color=super_color(int(s)), s=40, zorder=5, label=name,
                   edgecolor="white", linewidth=0.6)
    n = len(g["leaf_x"])
    ax.set_xlim(0, 10 * n)
    ax.set_xticks([])
    ax.set_xlabel(f"{n} leaves ({_plural(leaves_what)}), colour = super-class")
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    if title:
        ax.set_title(title)
    return ax
