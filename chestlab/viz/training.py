"""Figures of a run over its training steps.

* :func:`training_curves` (plotly) / :func:`training_curves_mpl` (matplotlib) -- loss components
  and Recall@1 / MAP@R over steps; the regularisers (``L_HypHC``, ``L_HIER``) on their own log axis.
  Both draw the same description: :func:`loss_terms` (the loss panel's curves) and
  :func:`metric_curves` (the metric panels').
* :func:`level_strip` -- the mean ``d_H(0, .)`` of each level of the hierarchy (root, super-class
  nodes, classes, samples) over training steps, beside the disk (plotly).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from .. import losses
from .style import COLORS, fit_figsize, plotly_font_size, plotly_height, plotly_scale

__all__ = ["SMALL_TERMS", "series", "loss_terms", "metric_curves", "training_curves", "training_curves_mpl", "level_strip"]

#: the parts of the losses: part key -> (name in a legend, colour)
_TERMS = {"l_h": ("L_H (Eq. 7, hyperbolic)", COLORS["H"]), "l_e": ("L_E (Eq. 7, Euclidean)", COLORS["E"]),
          "l_hyphc": ("L_HypHC (Eq. 9)", "#2ca02c"), "l_hier": ("L_HIER", "#9467bd"),
          "pair_ce": ("L_pair-CE", "#555555"), "mix": ("L_mix", "#555555"), "l_unsup": ("L_unsup", "#555555")}
#: the total of each loss, as the legend names it
_TOTALS = {"chest": "total L = η_H L_H + η_E L_E + τ L_HypHC (Eq. 10)",
           "chest_hier": "total L = L_CHEST + η_HIER L_HIER",
           "pair_ce": "total L = L_pair-CE", "pair_ce_hier": "total L = L_pair-CE + η_HIER L_HIER",
           "mix": "total L = L_mix", "unsup": "total L = L_unsup"}
#: regularisers whose value is orders of magnitude below the total (L_HypHC is ~1e-4 of it at the
#: paper's r = 2.3): drawn on their own log axis, right of the loss panel, or they are a flat line at 0
SMALL_TERMS = ("l_hyphc", "l_hier")


def loss_terms(rows: Sequence[Mapping], loss: Optional[str] = None, max_points: int = 400) -> list[dict]:
    """The loss curves of a run's step ``rows``: ``[{"key", "name", "color", "x", "y", "small"}, ...]``,
    the total first (named for ``loss``, :data:`_TOTALS`), then the loss's parts (its registered
    ``parts``; without ``loss``, those of :data:`_TERMS` found in the rows). A part that is 0 at every
    step (its weight is 0) is left out; a term of :data:`SMALL_TERMS` is ``small`` (its own log axis:
    only its values > 0 are kept)."""
    keys: Sequence[str] = tuple(_TERMS)
    if loss is not None:
        try:
            keys = tuple(losses.get_loss(loss).parts)
        except (KeyError, ValueError):
            pass
    out = []
    xs, ys = series(rows, "loss", max_points)
    if xs:
        out.append(dict(key="loss", name=_TOTALS.get(loss or "", "total L (Eq. 10)" if loss is None else "total L"),
                        color="black", x=xs, y=ys, small=False))
    grey = iter(("#555555", "#8c8c8c", "#2f2f2f"))
    for key in keys:
        xs, ys = series(rows, key, max_points)
        if not xs or not any(v != 0 for v in ys):
            continue
        name, color = _TERMS.get(key) or (key, next(grey, "#555555"))
        small = key in SMALL_TERMS
        if small:
            xs, ys = [a for a, b in zip(xs, ys) if b > 0], [b for b in ys if b > 0]
        if small:  # "L_HypHC (Eq. 9, right axis, log)", "L_HIER (right axis, log)"
            name = name[:-1] + ", right axis, log)" if name.endswith(")") else name + " (right axis, log)"
        out.append(dict(key=key, name=name, color=color, x=xs, y=ys, small=small))
    return out


def series(rows: Sequence[Mapping], key: str, max_points: int) -> tuple[list, list]:
    """``(steps, values)`` of ``key`` in ``rows`` (those with a finite value), at most ``max_points``
    of them: a long run is thinned evenly, its last point always kept."""
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None and np.isfinite(r[key])]
    if len(pts) > max_points:  # keep the page light: thin long runs evenly, always keep the last point
        idx = np.unique(np.r_[np.linspace(0, len(pts) - 1, max_points).astype(int), len(pts) - 1])
        pts = [pts[i] for i in idx]
    return [p[0] for p in pts], [p[1] for p in pts]


def metric_curves(rows: Sequence[Mapping], metric: str, max_points: int = 400) -> list[dict]:
    """The curves of one metric panel (``metric``: ``"R@1"`` or ``"MAP@R"``) of a run's ``rows``:
    ``[{"split", "space", "name", "color", "x", "y"}, ...]`` -- test (unseen classes) before train,
    H before E, those with at least one value."""
    out = []
    for split in ("test", "train"):
        for space in ("H", "E"):
            xs, ys = series(rows, f"{split}/{space}/{metric}", max_points)
            if xs:
                out.append(dict(split=split, space=space, color=COLORS[space], x=xs, y=ys,
                                name=f"{space} {'unseen (test)' if split == 'test' else 'train'} classes"))
    return out


def training_curves(history_rows: Iterable[Mapping], *, uirevision: str = "curves", height: int = 360,
                    max_points: int = 400, title: Optional[str] = None, loss: Optional[str] = None):
    """Loss components (left) and Recall@1 / MAP@R (middle / right) over steps.

    ``history_rows``: dicts with ``step`` and the loss ``loss`` and its parts (``l_h``, ``l_e``,
    ``l_hyphc``, ``l_hier``, ...: step rows) or metric keys ``{split}/{space}/{metric}``, e.g.
    ``test/H/R@1`` (``Trainer.history`` rows); ``loss``: the loss's registered name, which names the
    total and picks its parts (:func:`loss_terms`). The regularisers of :data:`SMALL_TERMS` are drawn
    on their own log axis right of the loss panel, so that a term 1e-4 of the total is seen moving.
    Test = unseen classes (solid), train classes dashed; H blue, E orange."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = list(history_rows)
    terms = loss_terms(rows, loss, max_points)
    twin = any(t["small"] for t in terms)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss (per step)", "Recall@1", "MAP@R"),
                        horizontal_spacing=0.07, specs=[[{"secondary_y": twin}, {}, {}]])
    for t in terms:
        fig.add_trace(go.Scatter(x=t["x"], y=t["y"], mode="lines", name=t["name"], legendgroup=t["key"],
                                 line=dict(color=t["color"], width=1.5 if t["key"] == "loss" else 1,
                                           dash="dot" if t["small"] else None)),
                      row=1, col=1, **({"secondary_y": t["small"]} if twin else {}))
    for col, metric in ((2, "R@1"), (3, "MAP@R")):
        for m in metric_curves(rows, metric, max_points):
            fig.add_trace(go.Scatter(
                x=m["x"], y=m["y"], mode="lines+markers", marker=dict(size=4), name=m["name"],
                legendgroup=f"{m['split']}{m['space']}", showlegend=col == 2,
                line=dict(color=m["color"], dash="solid" if m["split"] == "test" else "dash")), row=1, col=col)
    fig.update_xaxes(title_text="step")
    if twin:
        # the log axis's labels inside the panel, in the regulariser's colour (grey for two): outside they
        # would run into the next panel's in a narrow column; the legend says which terms use the axis
        smalls = [t for t in terms if t["small"]]
        fig.update_yaxes(title_text="loss", secondary_y=False, row=1, col=1)
        fig.update_yaxes(type="log", tickformat=".2~e", showgrid=False, ticklabelposition="inside", ticks="inside",
                         tickfont=dict(color=smalls[0]["color"] if len(smalls) == 1 else "#555555",
                                       size=plotly_font_size(10)),
                         secondary_y=True, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=3)
    k = plotly_scale()
    fig.update_layout(uirevision=uirevision, height=plotly_height(height), title=title, font_size=plotly_font_size(12),
                      margin=dict(l=int(40 * k), r=10, t=int((50 if title else 30) * k), b=10),
                      legend=dict(font=dict(size=plotly_font_size(10)), orientation="h", yanchor="top", y=-0.28 * k, x=0.5,
                                  xanchor="center"))
    if k > 1:  # the panel titles (make_subplots sets their size itself) projector-sized too
        fig.update_annotations(font_size=plotly_font_size(12))
    return fig


def training_curves_mpl(history_rows: Iterable[Mapping], *, figsize: Optional[tuple[float, float]] = None,
                        loss: Optional[str] = None):
    """Static (matplotlib) version of :func:`training_curves` (the same terms, the regularisers on a
    log axis of their own), for PNG/PDF. Font sizes come from matplotlib's settings and ``figsize``
    (default 9 x 2.6 in) grows to the settings' figure width, so
    :func:`chestlab.viz.style.use_lecture_style` makes it projector-sized; the legends sit below the
    panels, where they cover no curve."""
    from matplotlib.figure import Figure

    rows = list(history_rows)
    fig = Figure(figsize=figsize or fit_figsize((9.0, 2.6)), dpi=150, layout="constrained")
    axes = fig.subplots(1, 3)
    terms = loss_terms(rows, loss, 2000)
    twin = axes[0].twinx() if any(t["small"] for t in terms) else None
    for t in terms:
        ax = twin if t["small"] else axes[0]
        ax.plot(t["x"], t["y"], color=t["color"], ls=":" if t["small"] else "-", label=t["name"])
    if twin is not None:
        twin.set_yscale("log")
        twin.set_ylabel(" · ".join(t["name"].split(" (")[0] for t in terms if t["small"]) + " (log)")
    for ax, metric in ((axes[1], "R@1"), (axes[2], "MAP@R")):
        for m in metric_curves(rows, metric, 2000):
            ax.plot(m["x"], m["y"], ls="-" if m["split"] == "test" else "--", color=m["color"], marker="o", ms=3,
                    label=m["name"])
        ax.set_ylim(0, 1.02)
        ax.set_title(metric)
    axes[0].set_title("loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.spines[["top", "right"]].set_visible(False)
    # one legend below the panels (the two metric panels share their lines): it covers no curve
    handles, labels = axes[0].get_legend_handles_labels()
    if twin is not None:
        h1, l1 = twin.get_legend_handles_labels()
        handles, labels = handles + h1, labels + l1
    h2, l2 = (axes[1] if axes[1].lines else axes[2]).get_legend_handles_labels()
    if handles or h2:
        fig.legend(handles + h2, labels + l2, loc="outside lower center", ncols=4, frameon=False)
    return fig



#: the level strip's lines, coarse to fine: (level of disk_tree_geometry's "depth", colour, dash,
#: marker); greys, darker for coarser levels (red, blue and the super-class colours mean other things)
_LEVEL_STYLE = (("root", "#111111", "dot", "square"), ("super-classes", "#3d3d3d", "solid", "diamond"),
                ("classes", "#7a7a7a", "solid", "star"), ("samples", "#b0b0b0", "solid", "circle"))


def level_strip(history: Sequence[tuple[int, Mapping[str, float]]], *, classes_are: str = "proxies",
                uirevision: str = "levels", height: int = 190, max_points: int = 400):
    r"""A small chart of how far from the origin each level of the hierarchy sits, over training: the
    mean :math:`d_H(0, \cdot)` of the root, the super-class nodes, the classes (their proxies, or
    their means: ``classes_are``) and the samples, one line each, from ``history`` = ``[(step,
    {level: value}), ...]`` (:func:`chestlab.viz.hierarchy.disk_tree_geometry`'s ``"depth"`` per
    step). "Coarse near the origin, fine near the boundary" reads as the lines' order, bottom to top."""
    import plotly.graph_objects as go

    rows = [{"step": st, **dep} for st, dep in history]
    traces = []  # one figure from dicts: validated once (the strip is redrawn with the disk)
    for level, color, dash, symbol in _LEVEL_STYLE:
        xs, ys = series(rows, level, max_points)
        if xs:
            name = f"classes ({classes_are})" if level == "classes" else level
            traces.append(dict(type="scatter", x=xs, y=ys, mode="lines+markers" if len(xs) < 40 else "lines", name=name,
                               line=dict(color=color, width=2, dash=dash), marker=dict(symbol=symbol, size=6),
                               hovertemplate=f"{name}: %{{y:.2f}} at step %{{x}}<extra></extra>"))
    k = plotly_scale()
    axis = dict(gridcolor=COLORS["grid"], zeroline=False)
    return go.Figure(data=traces, layout=dict(
        uirevision=uirevision, height=plotly_height(height), font=dict(size=plotly_font_size(11)), plot_bgcolor="white",
        margin=dict(l=int(50 * k), r=10, t=int(24 * k), b=int(36 * k)),
        title=dict(text="mean d<sub>H</sub>(0, ·) per level", font=dict(size=plotly_font_size(12)), x=0.0, xanchor="left",
                   y=0.98, yanchor="top"),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom", font=dict(size=plotly_font_size(10))),
        xaxis=dict(axis, title=dict(text="step", standoff=2)),
        yaxis=dict(axis, title=dict(text="d<sub>H</sub>(0, ·)"), rangemode="tozero")))
