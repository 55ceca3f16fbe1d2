"""The hard-negative paper's Fig. 3: the weights of the pairwise cross-entropy's gradient over one
anchor's negatives, sorted by distance, sphere vs the Poincaré ball.

:func:`weight_curves` describes the figure once (the curves, computed by
:func:`chestlab.gradients.anchor_negative_weights`); :func:`weights_figure` draws it with plotly
(the dashboard) and :func:`chestlab.viz.paper.hardneg_weights` with matplotlib in the paper's style.
"""

from __future__ import annotations

import math

from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..gradients import anchor_negative_weights
from .style import COLORS, plotly_font_size, plotly_height, plotly_scale

__all__ = ["weight_curves", "weights_figure"]

#: the dashboard's colours of the hyperbolic curves, one per curvature (lighter = smaller ``c``)
_SHADES = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#6a51a3")



#: the smallest weight the plotly figure's y axis shows (log axis from here to 1; ticks 10^-8, 10^-6, …, 1)
W_FLOOR = 1e-8

def weight_curves(v: Any, *, t_sphere: float, t: float, c_values: Sequence[float], labels: Any = None,
                  anchor: int = 0) -> list[dict]:
    """The curves of the figure, sphere first: ``[{"c": None or c, "t", "x" (1..N), "w" (N,)}, ...]`` --
    the weights ``w_ik`` of one ``anchor`` of the tangent features ``v`` (N, D) over its negatives
    sorted by distance (1 = hardest), on the sphere (temperature ``t_sphere``) and in the ball of each
    curvature of ``c_values`` (temperature ``t``); the same ``v`` feeds every geometry, so only the
    geometry changes."""
    out = []
    for c, temp in [(None, float(t_sphere))] + [(float(c), float(t)) for c in c_values]:
        _, w = anchor_negative_weights(v, temp, c, anchor=anchor, labels=labels)
        out.append(dict(c=c, t=temp, x=np.arange(1, len(w) + 1), w=w))
    return out


def weights_figure(
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
):
    """Weights ``w`` of the pairwise cross-entropy's gradient over the negatives of one anchor, sorted
    by distance (hardest first): sphere (cosine, temperature ``t_sphere``, default ``t``) vs the
    Poincaré ball for each curvature in ``c_values`` (temperature ``t``), plotly. The hard-negative
    paper's Fig. 3: small ``t`` and hyperbolic distances concentrate ``w`` on the hardest negatives.

    ``v`` (N, D): tangent features (``log_0`` of a model's ``x_H``, say) shared by all geometries so
    only the geometry changes; default: ``n`` Gaussian vectors in ``dim`` dimensions (``seed``)."""
    import plotly.graph_objects as go

    if v is None:
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(n, dim, generator=g, dtype=torch.float64)
    ts = float(t if t_sphere is None else t_sphere)
    fig = go.Figure()
    curves = weight_curves(v, t_sphere=ts, t=t, c_values=c_values, labels=labels, anchor=anchor)
    for i, cur in enumerate(curves):
        w = cur["w"]
        if cur["c"] is None:
            name, line = f"sphere (cos), t = {cur['t']:g}  · max w = {w.max():.2f}", dict(color=COLORS["E"], width=2)
        else:
            name = f"hyperbolic c = {cur['c']:g}, t = {cur['t']:g}  · max w = {w.max():.2f}"
            line = dict(color=_SHADES[(i - 1) % len(_SHADES)], width=2)
        fig.add_trace(go.Scatter(x=cur["x"], y=w, mode="lines+markers", marker=dict(size=4), name=name, line=line))
    uniform = 1.0 / max(len(curves[-1]["w"]), 1)
    fig.add_hline(y=uniform, line=dict(color="gray", dash="dot"))
    # the label just above the line, at its right end; on a log axis an annotation's y is log10 of the
    # value (add_hline's own annotation took 1/N as the exponent and sat at w = 1, the top of the plot)
    fig.add_annotation(text="uniform 1/N", x=1.0, xref="x domain", xanchor="right", y=math.log10(uniform), yref="y",
                       yanchor="bottom", showarrow=False, font=dict(color="gray"))
    k = plotly_scale()
    # the y axis is bounded: at t = 0.01 the softest weights reach 1e-290, and an axis down to there
    # squeezes the curves into a band with unreadable ticks; weights below W_FLOOR lie under the axis
    fig.update_layout(uirevision=uirevision, height=plotly_height(height), font_size=plotly_font_size(12),
                      margin=dict(l=int(40 * k), r=10, t=int(30 * k), b=int(40 * k)),
                      xaxis_title="negatives sorted by distance to the anchor (1 = hardest)",
                      yaxis=dict(title="weight w_ik (log scale)", type="log", exponentformat="power",
                                 range=[math.log10(W_FLOOR), 0.05], dtick=2),
                      # the legend sits under the plot: in its corner it covered the "uniform 1/N" line's label
                      legend=dict(font=dict(size=plotly_font_size(10)), orientation="h", x=0.0, xanchor="left",
                                  y=-0.3, yanchor="top"))
    fig.update_layout(margin=dict(b=int(40 * k) + 22 * ((len(curves) + 1) // 2)))
    return fig
