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
from .style import COLORS, FONT_SIZE, PLOTLY_SYMBOLS, class_color, name_of, plotly_font_size, plotly_scale

__all__ = ["add_polylines", "add_disk", "circle_label", "add_embeddings", "add_proxies", "style_disk"]


def add_polylines(fig: go.Figure, lines: Sequence[np.ndarray], *, name: Optional[str] = None,
                  color: str = "black", width: float = 1.0, dash: Optional[str] = None,
                  showlegend: bool = False) -> go.Figure:
    """All ``lines`` ((n, 2) arrays) as one ``lines`` trace, polylines separated by ``None``."""
    xs: list = []
    ys: list = []
    for p in lines:
        xs += p[:, 0].tolist() + [None]
        ys += p[:, 1].tolist() + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=width, dash=dash), name=name,
                             showlegend=showlegend, hoverinfo="skip"))
    return fig


def add_disk(fig: go.Figure, c: float, *, grid: bool = False, circles: Sequence[float] = (), n_diameters: int = 6,
             grid_dists: Sequence[float] = (1.0, 2.0, 3.0), label_angle: Optional[float] = None,
             avoid: Any = None) -> go.Figure:
    """The disk of curvature ``-c`` behind the data: boundary (radius ``1/sqrt(c)``, none at ``c = 0``),
    the :func:`~chestlab.viz.geometry.geodesic_grid` (trace ``"geodesics"``) when ``grid``, and a
    dotted circle labelled ``d_H = d`` at each Poincaré distance ``d`` of ``circles`` from the origin,
    the labels where :func:`~chestlab.viz.geometry.circle_label_points` puts them (``label_angle``:
    the first one's angle in degrees, default between two diameters; ``avoid``: points (N, 2) they
    should not cover)."""
    R = geometry.disk_radius(c)
    if math.isfinite(R):
        fig.add_shape(type="circle", x0=-R, y0=-R, x1=R, y1=R, line=dict(color=COLORS["boundary"], width=2),
                      layer="below")
    if grid:
        add_polylines(fig, geometry.geodesic_grid(c, n_diameters, grid_dists), name="geodesics",
                      color=COLORS["grid"], width=1, showlegend=True)
    labels_at = geometry.circle_label_points(c, circles, n_diameters, label_angle=label_angle, avoid=avoid)
    for d, (x, y) in zip(circles, labels_at):
        r = geometry.euclid_radius(float(d), c)
        fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color=COLORS["circle"], width=1, dash="dot"),
                      layer="below")
        # on a white box, between two diameters of the grid (geometry.circle_label_points); no fixed
        # size: the layout's (or the template's) font size, like the rest of the figure
        fig.add_annotation(x=x, y=y, text=circle_label(d), showarrow=False, font=dict(color=COLORS["circle_label"]),
                           bgcolor="rgba(255,255,255,0.85)", borderpad=2)
    return fig


def circle_label(d: float) -> str:
    """The label of the distance circle at Poincaré distance ``d`` from 0: ``d_H = d`` (HTML)."""
    return f"<i>d</i><sub>H</sub> = {d:g}"


def add_embeddings(fig: go.Figure, x2d: Any, labels: Any, super_labels: Any = None, *,
                   class_names: Optional[Sequence[str]] = None, super_names: Optional[Sequence[str]] = None,
                   marker_size: int = 6) -> go.Figure:
    """Points ``x2d`` (N, 2): colour = class ``labels`` (N,), marker = super-class ``super_labels`` (N,)
    (all one marker when None); one WebGL trace per super-class, so the legend explains the markers."""
    x = geometry.as_numpy(x2d).reshape(-1, 2)
    y = geometry.as_numpy(labels).astype(int).reshape(-1)
    s = np.zeros_like(y) if super_labels is None else geometry.as_numpy(super_labels).astype(int).reshape(-1)
    for k, sup in enumerate(np.unique(s)):
        m = s == sup
        fig.add_trace(go.Scattergl(
            x=x[m, 0], y=x[m, 1], mode="markers", name=name_of(int(sup), super_names, "super-class"),
            marker=dict(color=[class_color(i) for i in y[m]], size=marker_size,
                        symbol=PLOTLY_SYMBOLS[k % len(PLOTLY_SYMBOLS)], opacity=0.8, line=dict(width=0)),
            text=[name_of(int(i), class_names, "class") for i in y[m]],
            hovertemplate="%{text}<extra>%{fullData.name}</extra>",
        ))
    return fig


def add_proxies(fig: go.Figure, proxies: Any, proxy_labels: Any = None, *,
                class_names: Optional[Sequence[str]] = None) -> go.Figure:
    """Proxies (C, K, 2) or (P, 2) (see :func:`~chestlab.viz.geometry.proxy_points`) as large stars in
    their class colour, one trace ``"proxies (train classes)"``."""
    p, pl = geometry.proxy_points(proxies, proxy_labels)
    fig.add_trace(go.Scatter(
        x=p[:, 0], y=p[:, 1], mode="markers", name="proxies (train classes)",
        marker=dict(symbol="star", size=14, color=[class_color(i) for i in pl],
                    line=dict(color=COLORS["proxy_edge"], width=1)),
        text=[f"proxy of {name_of(int(i), class_names, 'class')}" for i in pl], hovertemplate="%{text}<extra></extra>",
    ))
    return fig


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
                      legend=dict(font=dict(size=small), itemsizing="constant", orientation="h", yanchor="top",
                                  y=-0.12, x=0.5, xanchor="center"))
    return fig
