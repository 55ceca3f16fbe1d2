"""Figures of a batch's similarities (the CHEST paper's Fig. 3) and of Eq. 7's per-sample margins.

* :func:`similarity_histogram` -- ``S_H`` / ``S_E`` of a batch's samples to their own class
  (positive) vs the other classes (negative), pooled over the batch.
* :func:`margin_histogram` -- what Eq. 7 actually compares, sample by sample: each sample's margin
  ``S_own - (1/lambda) logsumexp(lambda S_other)`` (and ``S_own - max S_other``) against ``delta``
  (:func:`chestlab.metrics.per_sample_margins` computes it).

Each figure is described once (:func:`similarity_panels`, :func:`margin_panels`: the data, bins,
margins and notes of its two panels) and drawn by two backends: plotly (``uirevision`` fixed, so a
live page keeps the user's zoom) and matplotlib (``*_mpl``, the papers' static style, for PNG/PDF:
:func:`chestlab.viz.mpl.to_png`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..metrics import per_sample_margins, similarity_arrays
from .style import COLORS, fit_figsize, plotly_font_size, plotly_height, plotly_scale

__all__ = ["similarity_panels", "similarity_histogram", "similarity_histogram_mpl", "margin_panels",
           "margin_histogram", "margin_histogram_mpl", "margin_summary"]

_SPACES = ("h", "e")
_SPACE_NAMES = {"h": "hyperbolic", "e": "Euclidean"}
_MARGIN_COLOR = "#6a51a3"  # neither the positive (red) nor the negative (blue) class colour
_NOT_COMPUTED = "not computed<br>(its weight η is 0,<br>or the loss<br>has no proxies)"  # narrow lines: half a compare column


def _finite(delta: Optional[float]) -> bool:
    return delta is not None and bool(np.isfinite(delta))


def margin_summary(m: np.ndarray, delta: Optional[float]) -> str:
    """``"m ≥ δ for 83% of 64 samples"`` (what Eq. 7 asks, sample by sample), or ``"64 samples"``
    without a margin ``delta``."""
    if not _finite(delta):
        return f"{len(m)} samples"
    return f"m ≥ δ for {np.mean(m >= delta):.0%} of {len(m)} samples"


def _margin_note(sim_event: Any, space: str, delta: Optional[float], lam: Optional[float]) -> str:
    """:func:`margin_summary` of a space, or "" when it cannot be computed (no delta or lambda, or
    negatives not laid out (B, C - 1))."""
    if lam is None or not _finite(delta):
        return ""
    try:
        mm = per_sample_margins(sim_event, space, lam)
    except ValueError:
        return ""
    return "" if mm is None else margin_summary(mm["soft"], delta)


def _blank_plotly_panel(fig: Any, col: int) -> None:
    dom = (fig.layout.xaxis if col == 1 else fig.layout.xaxis2).domain
    fig.add_annotation(text=_NOT_COMPUTED, xref="paper", yref="paper", x=(dom[0] + dom[1]) / 2, y=0.5, showarrow=False,
                       font=dict(color="gray"))
    fig.update_xaxes(showticklabels=False, row=1, col=col)
    fig.update_yaxes(showticklabels=False, row=1, col=col)


# ------------------------------------------------------------------------------------------------
# similarity histograms (CHEST paper, Fig. 3)
# ------------------------------------------------------------------------------------------------
def similarity_panels(sim_event: Any, delta_h: Optional[float] = None, delta_e: Optional[float] = None, *,
                      lambda_h: Optional[float] = None, lambda_e: Optional[float] = None) -> list[Optional[dict]]:
    """What :func:`similarity_histogram` draws, H then E: per space None (not computed) or
    ``{"space", "pos", "neg", "lo", "hi", "delta", "note"}`` -- the positive and negative
    similarities, their range, the margin ``delta`` (None when not given or not finite) and the
    fraction of samples meeting it (:func:`margin_summary`, "" when it cannot be computed)."""
    parts = similarity_arrays(sim_event)
    out: list[Optional[dict]] = []
    for space, delta, lam in (("h", delta_h, lambda_h), ("e", delta_e, lambda_e)):
        pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
        if pos is None or neg is None or len(pos) == 0:
            out.append(None)
            continue
        has = _finite(delta)
        out.append(dict(space=space, pos=pos, neg=neg, lo=float(min(pos.min(), neg.min())),
                        hi=float(max(pos.max(), neg.max())), delta=float(delta) if has else None,
                        note=_margin_note(sim_event, space, delta, lam) if has else ""))
    return out


def similarity_histogram(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    lambda_h: Optional[float] = None,
    lambda_e: Optional[float] = None,
    bins: int = 40,
    title: Optional[str] = None,
    uirevision: str = "similarity",
    height: int = 330,
):
    """Histograms of a batch's soft similarities :math:`S(x_i, y)` to its own class (positive,
    :math:`y = y_i`) and to every other class (negative, :math:`y \\ne y_i`), H and E side by side: the
    CHEST paper's Fig. 3 (plotly).

    ``sim_event``: a :class:`chestlab.engine.SimilarityEvent` or a mapping with ``h_pos``, ``h_neg``,
    ``e_pos``, ``e_neg`` (arrays or None when a space is switched off, e.g. ``eta_E = 0``).

    The histograms pool all samples, so no line drawn on them can say whether Eq. 7's margin is met:
    Eq. 7 compares each sample's positive with *its own* negatives. With ``delta`` given the panel
    title names it; with ``delta`` and that space's ``lambda`` it also gives the fraction of samples
    whose per-sample margin reaches it (:func:`chestlab.metrics.per_sample_margins`);
    :func:`margin_histogram` draws those margins. Densities are normalised so both classes compare.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("hyperbolic S_H", "Euclidean S_E"),
                        horizontal_spacing=0.08)
    two_lines = False
    for col, p in enumerate(similarity_panels(sim_event, delta_h, delta_e, lambda_h=lambda_h, lambda_e=lambda_e), start=1):
        if p is None:
            _blank_plotly_panel(fig, col)
            continue
        lo, hi = p["lo"], p["hi"]
        size = max((hi - lo) / bins, 1e-6)
        for name, vals, color in (("positive class", p["pos"], COLORS["pos"]), ("negative classes", p["neg"], COLORS["neg"])):
            fig.add_trace(
                go.Histogram(x=vals, name=name, legendgroup=name, showlegend=col == 1, marker_color=color, opacity=0.6,
                             histnorm="probability density", xbins=dict(start=lo, end=hi + size, size=size)),
                row=1, col=col,
            )
        if p["delta"] is not None:
            note = p["note"]
            fig.layout.annotations[col - 1].text += f"  (δ_{p['space'].upper()} = {p['delta']:g})" + (f"<br>{note}" if note else "")
            two_lines = two_lines or bool(note)
    return _histogram_layout(fig, title=title, uirevision=uirevision, height=height,
                             top=(60 if title else 40) + (18 if two_lines else 0), text_size=11,
                             xtitle="S(x_i, y)  (higher = closer)", ytitle="density")



#: the bottom margin (px, scaled with the lecture style) of the histogram figures: tick labels, the x-axis
#: title and one line of legend, at up to 14 px (the dashboard's projector floor)
BOTTOM_PX = 78


def _histogram_layout(fig: Any, *, title: Optional[str], uirevision: Any, height: Any, top: int, text_size: int,
                      xtitle: str, ytitle: str) -> Any:
    """The layout the two plotly histogram figures share: overlaid bars, the legend under the panels,
    ``top`` px above them (scaled with the lecture style, as the left margin), legend and x-axis title
    at ``text_size``, panel titles at the body size."""
    k = plotly_scale()  # > 1 under the lecture style: larger fonts need room
    # the legend sits at the figure's foot (container coordinates) below a bottom margin that holds the tick
    # labels and the x-axis title: placed in plot fractions it ran into the axis title once the figure was
    # made lower (the dashboard caps the height of a scenario's panel)
    fig.update_layout(barmode="overlay", uirevision=uirevision, height=plotly_height(height), title=title,
                      font_size=plotly_font_size(12), margin=dict(l=int(40 * k), r=10, t=int(top * k), b=int(BOTTOM_PX * k)),
                      legend=dict(orientation="h", yref="container", yanchor="bottom", y=0.0, x=0.5, xanchor="center",
                                  font=dict(size=plotly_font_size(text_size))))
    fig.update_xaxes(title_text=xtitle, title_font_size=plotly_font_size(text_size))
    if k > 1:  # the panel titles (make_subplots sets their size itself) projector-sized too
        fig.update_annotations(font_size=plotly_font_size(12))
    fig.update_yaxes(title_text=ytitle, col=1)
    return fig

def similarity_histogram_mpl(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    lambda_h: Optional[float] = None,
    lambda_e: Optional[float] = None,
    bins: int = 40,
    title: Optional[str] = None,
    figsize: Optional[tuple[float, float]] = None,
):
    """The same figure (:func:`similarity_panels`) in the paper's static style (matplotlib), for
    PNG/PDF: histograms, positive class red and negative classes blue as in the paper's Fig. 3;
    ``delta`` (and ``lambda``) as in :func:`similarity_histogram`: named in the panel titles with the
    fraction of samples meeting the margin -- :func:`margin_histogram_mpl` draws the margins. Font
    sizes come from matplotlib's settings and ``figsize`` (default 7 x 2.6 in) grows to the settings'
    figure width, so :func:`chestlab.viz.style.use_lecture_style` makes it projector-sized."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads

    fig = Figure(figsize=figsize or fit_figsize((7.0, 2.6)), dpi=150, layout="constrained")
    axes = fig.subplots(1, 2)
    panels = similarity_panels(sim_event, delta_h, delta_e, lambda_h=lambda_h, lambda_e=lambda_e)
    for ax, p, label in zip(axes, panels, ("$S_H(x_i, y)$", "$S_E(x_i, y)$")):
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel(label)
        if p is None:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        edges = np.linspace(p["lo"], p["hi"] + 1e-9, bins + 1)
        ax.hist(p["neg"], bins=edges, density=True, color=COLORS["neg"], alpha=0.45, label="negative classes")
        ax.hist(p["pos"], bins=edges, density=True, color=COLORS["pos"], alpha=0.55, label="positive class")
        if p["delta"] is not None:
            note = p["note"].replace("m ≥ δ", r"$m_i \geq \delta$")
            ax.set_title(rf"$\delta_{p['space'].upper()}$ = {p['delta']:g}" + (f"\n{note}" if note else ""))
    axes[0].set_ylabel("density")
    if axes[0].patches or axes[1].patches:  # one legend below both panels: it covers no bar
        src = axes[0] if axes[0].patches else axes[1]
        fig.legend(*src.get_legend_handles_labels(), loc="outside lower center", ncols=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------------------
# per-sample margins: what Eq. 7 compares
# ------------------------------------------------------------------------------------------------
def margin_panels(sim_event: Any, delta_h: Optional[float] = None, delta_e: Optional[float] = None, *,
                  lambda_h: float = 20.0, lambda_e: float = 20.0, bins: int = 40) -> list[Optional[dict]]:
    """What :func:`margin_histogram` draws, H then E: per space None (not computed) or ``{"space",
    "name", "delta", "soft", "hard", "edges", "soft_counts", "hard_counts", "summary"}`` -- the
    margins of :func:`chestlab.metrics.per_sample_margins`, shared bins ``edges`` (``bins + 1``)
    padded so that a margin line at the edge of the data stays visible, their counts, and
    :func:`margin_summary`."""
    out: list[Optional[dict]] = []
    for space, delta, lam in (("h", delta_h, lambda_h), ("e", delta_e, lambda_e)):
        mm = per_sample_margins(sim_event, space, lam)
        if mm is None:
            out.append(None)
            continue
        has = _finite(delta)
        vals = np.r_[mm["soft"], mm["hard"], [float(delta)] if has else []]
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.04 * max(hi - lo, 1e-3)
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
        out.append(dict(space=space, name=_SPACE_NAMES[space], delta=float(delta) if has else None, soft=mm["soft"],
                        hard=mm["hard"], edges=edges, soft_counts=np.histogram(mm["soft"], bins=edges)[0],
                        hard_counts=np.histogram(mm["hard"], bins=edges)[0], summary=margin_summary(mm["soft"], delta)))
    return out


def margin_histogram(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    lambda_h: float = 20.0,
    lambda_e: float = 20.0,
    bins: int = 40,
    title: Optional[str] = None,
    uirevision: str = "margin",
    height: int = 360,
):
    """What Eq. 7 compares, sample by sample: the histogram of each sample's margin
    ``m = S_own - (1/lambda) log sum exp(lambda S_other)`` (filled;
    :func:`chestlab.metrics.per_sample_margins`) and of the hard margin ``S_own - max S_other``
    (outline), H and E side by side, with the margin ``delta`` of Eq. 7 dashed: a sample left of it
    (shaded) has a loss above ``log 2``, one right of it meets the margin. The panel titles give the
    fraction of samples with ``m >= delta`` (plotly; :func:`margin_panels` describes it).

    ``sim_event`` as for :func:`similarity_histogram` (a space that was not computed is marked so);
    ``lambda_h`` / ``lambda_e``: the :math:`\\lambda` of each space (the log-sum-exp's sharpness).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("hyperbolic", "Euclidean"), horizontal_spacing=0.08)
    panels = margin_panels(sim_event, delta_h, delta_e, lambda_h=lambda_h, lambda_e=lambda_e, bins=bins)
    for col, p in enumerate(panels, start=1):
        if p is None:
            _blank_plotly_panel(fig, col)
            continue
        edges, soft, hard, delta = p["edges"], p["soft_counts"], p["hard_counts"], p["delta"]
        mid, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        show = col == 1
        fig.add_trace(go.Bar(x=mid, y=soft, width=width, marker_color=_MARGIN_COLOR, opacity=0.7, legendgroup="soft",
                             name="m (Eq. 7, soft-max λ)", showlegend=show), row=1, col=col)
        fig.add_trace(go.Scatter(x=np.r_[edges[0], edges], y=np.r_[0, hard, 0], mode="lines", line_shape="hv",
                                 line=dict(color="black", width=1.5), legendgroup="hard",
                                 name="S_own − max S_other", showlegend=show), row=1, col=col)
        if delta is not None:
            top = 1.05 * max(soft.max(), hard.max(), 1)
            fig.add_vrect(x0=edges[0], x1=delta, fillcolor="#bdbdbd", opacity=0.3, line_width=0, row=1, col=col)
            fig.add_trace(go.Scatter(x=[delta] * 2, y=[0, top], mode="lines", line=dict(color="black", width=2, dash="dash"),
                                     name="margin δ (left: loss > log 2)", legendgroup="delta", showlegend=show,
                                     hovertemplate=f"δ_{p['space'].upper()} = {delta:g}<extra></extra>"), row=1, col=col)
            fig.layout.annotations[col - 1].text += f" (δ_{p['space'].upper()} = {delta:g})"
        fig.layout.annotations[col - 1].text += f"<br>{p['summary']}"  # two lines: panels side by side
    return _histogram_layout(fig, title=title, uirevision=uirevision, height=height, top=88 if title else 58,
                             text_size=12, xtitle="margin m (higher = better)", ytitle="samples")  # under each half: short


def margin_histogram_mpl(
    sim_event: Any,
    delta_h: Optional[float] = None,
    delta_e: Optional[float] = None,
    *,
    lambda_h: float = 20.0,
    lambda_e: float = 20.0,
    bins: int = 40,
    title: Optional[str] = None,
    figsize: tuple[float, float] = (12.0, 4.4),
):
    """Static (matplotlib) version of :func:`margin_histogram`, from the same :func:`margin_panels`.
    Font sizes follow matplotlib's settings, so :func:`chestlab.viz.style.use_lecture_style` makes it
    projector-sized."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    panels = margin_panels(sim_event, delta_h, delta_e, lambda_h=lambda_h, lambda_e=lambda_e, bins=bins)
    for ax, p, space in zip(axes, panels, _SPACES):
        ax.spines[["top", "right"]].set_visible(False)
        name = _SPACE_NAMES[space]
        if p is None:
            ax.set_title(name)
            ax.text(0.5, 0.5, "not computed\n(its weight η is 0)", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        edges, delta = p["edges"], p["delta"]
        ax.hist(p["soft"], bins=edges, color=_MARGIN_COLOR, alpha=0.7, label=r"$m_i = S_{own} - \frac{1}{\lambda}\log\sum e^{\lambda S_{other}}$")
        ax.hist(p["hard"], bins=edges, histtype="step", color="black", lw=1.5, label=r"$S_{own} - \max\, S_{other}$")
        if delta is not None:
            ax.axvspan(edges[0], delta, color="#bdbdbd", alpha=0.35, lw=0, label=r"$m_i < \delta$: loss $> \log 2$")
            ax.axvline(delta, color="black", ls="--", lw=2, label=r"margin $\delta$")
            name += rf" ($\delta_{space.upper()}$ = {delta:g})"
        summary = p["summary"].replace("m ≥ δ", r"$m_i \geq \delta$")
        ax.set_title(f"{name}\n{summary}")
        ax.set_xlabel("per-sample margin (higher = better separated)")
    axes[0].set_ylabel("samples")
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if handles:  # one legend for both panels, below them: it never covers the bars
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
