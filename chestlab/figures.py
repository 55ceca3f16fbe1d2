"""Figure builders shared by the dashboard (``app.py``), the notebooks and the reproduction scripts.

One source of truth per figure. Interactive builders return a :class:`plotly.graph_objects.Figure`
with a fixed ``uirevision`` so that a live page keeps the user's zoom when the figure is rebuilt;
the ``*_mpl`` builders return a :class:`matplotlib.figure.Figure` in the papers' static style for
PNG/PDF export (:func:`to_png`).

Figures:

* :func:`similarity_histogram` -- ``S_H`` / ``S_E`` of a batch's samples to their own class
  (positive) vs the other classes (negative), pooled over the batch (the CHEST paper's Fig. 3).
* :func:`margin_histogram` -- what Eq. 7 actually compares, sample by sample: each sample's margin
  ``S_own - (1/lambda) logsumexp(lambda S_other)`` (and ``S_own - max S_other``) against ``delta``
  (:func:`per_sample_margins` computes it).
* :func:`poincare_disk` -- points in the Poincaré disk of curvature ``-c`` coloured by super-class
  (shade = class), proxies as stars, the super-class nodes and the root with their geodesics;
  optional geodesic grid and distance circles. Coordinates come
  from :func:`project_to_disk` (exact for ``D_H = 2``, tangent-space PCA otherwise) or
  :func:`umap_disk` (UMAP with hyperboloid output, mapped to the disk). The disk's geometry and its
  drawing live in :mod:`chestlab.viz` (one geometry layer, a plotly and a matplotlib backend).
* :func:`level_strip` -- the mean ``d_H(0, .)`` of each level of the hierarchy (root, super-class
  nodes, classes, samples) over training steps, beside the disk.
* :func:`training_curves` -- loss components and Recall@1 / MAP@R over steps; the regularisers
  (``L_HypHC``, ``L_HIER``) on their own log axis.
* :func:`hard_negative_weights_figure` -- weights ``w`` of the pairwise cross-entropy over negatives
  sorted by distance, sphere vs hyperbolic (the hard-negative paper's Fig. 3).
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import losses, poincare
from .viz import geometry
from .viz import plotly as viz_plotly
from .viz.geometry import hyperboloid_to_disk, project_to_disk
from .viz.style import COLORS, plotly_font_size, plotly_scale

__all__ = [
    "COLORS",
    "similarity_histogram",
    "similarity_histogram_mpl",
    "per_sample_margins",
    "margin_histogram",
    "margin_histogram_mpl",
    "poincare_disk",
    "poincare_disk_mpl",
    "project_to_disk",
    "projection_label",
    "hyperboloid_to_disk",
    "umap_disk",
    "level_strip",
    "training_curves",
    "training_curves_mpl",
    "loss_terms",
    "hard_negative_weights_figure",
    "hard_negative_weights",
    "to_png",
]

_np = geometry.as_numpy


# ------------------------------------------------------------------------------------------------
# similarity histograms (CHEST paper, Fig. 3)
# ------------------------------------------------------------------------------------------------
def _height(height: int) -> int:
    """A plotly figure's height: as asked, or taller under the lecture style (larger fonts, the same
    room for the plot)."""
    return int(round(height * plotly_scale()))


def _sim_parts(sim_event: Any) -> dict:
    get = (lambda k: sim_event.get(k)) if isinstance(sim_event, Mapping) else (lambda k: getattr(sim_event, k, None))
    return {k: _np(get(k)) for k in ("h_pos", "h_neg", "e_pos", "e_neg")}


def _margin_note(sim_event: Any, space: str, delta: Optional[float], lam: Optional[float]) -> str:
    """``"m ≥ δ for 83% of 64 samples"`` (what Eq. 7 asks, sample by sample), or "" when it cannot be
    computed (no delta or lambda, or negatives not laid out (B, C - 1))."""
    if delta is None or lam is None or not np.isfinite(delta):
        return ""
    try:
        mm = per_sample_margins(sim_event, space, lam)
    except ValueError:
        return ""
    return "" if mm is None else _margin_summary(mm["soft"], delta)


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
) -> go.Figure:
    """Histograms of a batch's soft similarities :math:`S(x_i, y)` to its own class (positive,
    :math:`y = y_i`) and to every other class (negative, :math:`y \\ne y_i`), H and E side by side: the
    CHEST paper's Fig. 3.

    ``sim_event``: a :class:`chestlab.train.SimilarityEvent` or a mapping with ``h_pos``, ``h_neg``,
    ``e_pos``, ``e_neg`` (arrays or None when a space is switched off, e.g. ``eta_E = 0``).

    The histograms pool all samples, so no line drawn on them can say whether Eq. 7's margin is met:
    Eq. 7 compares each sample's positive with *its own* negatives. With ``delta`` given the panel
    title names it; with ``delta`` and that space's ``lambda`` it also gives the fraction of samples
    whose per-sample margin reaches it (:func:`per_sample_margins`); :func:`margin_histogram` draws
    those margins. Densities are normalised so both classes compare.
    """
    parts = _sim_parts(sim_event)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("hyperbolic S_H", "Euclidean S_E"),
                        horizontal_spacing=0.08)
    two_lines = False
    for col, (space, delta, lam) in enumerate((("h", delta_h, lambda_h), ("e", delta_e, lambda_e)), start=1):
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
            note = _margin_note(sim_event, space, delta, lam)
            fig.layout.annotations[col - 1].text += f"  (δ_{space.upper()} = {float(delta):g})" + (f"<br>{note}" if note else "")
            two_lines = two_lines or bool(note)
    k = plotly_scale()  # > 1 under the lecture style: larger fonts need room
    top = (60 if title else 40) + (18 if two_lines else 0)
    fig.update_layout(barmode="overlay", uirevision=uirevision, height=_height(height), title=title,
                      font_size=plotly_font_size(12), margin=dict(l=int(40 * k), r=10, t=int(top * k), b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.25 * k, x=0.5, xanchor="center",
                                  font=dict(size=plotly_font_size(11))))
    fig.update_xaxes(title_text="S(x_i, y)  (higher = closer)", title_font_size=plotly_font_size(11))
    if k > 1:  # the panel titles (make_subplots sets their size itself) projector-sized too
        fig.update_annotations(font_size=plotly_font_size(12))
    fig.update_yaxes(title_text="density", col=1)
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
    """The same figure in the paper's static style (matplotlib), for PNG/PDF: histograms, positive
    class red and negative classes blue as in the paper's Fig. 3; ``delta`` (and ``lambda``) as in
    :func:`similarity_histogram`: named in the panel titles with the fraction of samples meeting the
    margin -- :func:`margin_histogram_mpl` draws the margins. Font sizes come from matplotlib's
    settings and ``figsize`` (default 7 x 2.6 in) grows to the settings' figure width, so
    :func:`chestlab.viz.style.use_lecture_style` makes it projector-sized."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads

    from .viz.style import fit_figsize

    parts = _sim_parts(sim_event)
    fig = Figure(figsize=figsize or fit_figsize((7.0, 2.6)), dpi=150, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (space, label, delta, lam) in zip(axes, (("h", "$S_H(x_i, y)$", delta_h, lambda_h),
                                                     ("e", "$S_E(x_i, y)$", delta_e, lambda_e))):
        pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel(label)
        if pos is None or neg is None or len(pos) == 0:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        edges = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()) + 1e-9, bins + 1)
        ax.hist(neg, bins=edges, density=True, color=COLORS["neg"], alpha=0.45, label="negative classes")
        ax.hist(pos, bins=edges, density=True, color=COLORS["pos"], alpha=0.55, label="positive class")
        if delta is not None and np.isfinite(delta):
            note = _margin_note(sim_event, space, delta, lam).replace("m ≥ δ", r"$m_i \geq \delta$")
            ax.set_title(rf"$\delta_{space.upper()}$ = {float(delta):g}" + (f"\n{note}" if note else ""))
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
_SPACE_NAMES = {"h": "hyperbolic", "e": "Euclidean"}
_MARGIN_COLOR = "#6a51a3"  # neither the positive (red) nor the negative (blue) class colour


def per_sample_margins(sim_event: Any, space: str = "h", lam: float = 20.0) -> Optional[dict]:
    r"""Each sample's margin in Eq. 7, from a batch's similarities to its own class and the others.

    For a sample :math:`x_i` of class :math:`y_i`, Eq. 7 is a cross-entropy that can be rewritten as

    .. math:: L(x_i) = \log\Big(1 + \sum_{y \ne y_i} e^{\lambda (S_y - S_{y_i} + \delta)}\Big)
              = \operatorname{softplus}\big(\lambda(\delta - m_i)\big), \qquad
              m_i = S_{y_i} - \frac1\lambda \log \sum_{y \ne y_i} e^{\lambda S_y},

    so the loss depends on the sample only through its margin :math:`m_i`: :math:`m_i \ge \delta`
    exactly when :math:`L(x_i) \le \log 2`, and the loss vanishes once :math:`m_i` exceeds
    :math:`\delta` by a few :math:`1/\lambda`. The log-sum-exp is a soft maximum:
    :math:`m_i \le S_{y_i} - \max_{y\ne y_i} S_y \le m_i + \log(C - 1)/\lambda`.

    ``sim_event``: a :class:`chestlab.train.SimilarityEvent` or a mapping with ``{space}_pos`` (B,)
    and ``{space}_neg``, either (B, C - 1) or flat (B (C - 1),) in row-major order (how
    ``Trainer.similarities`` stores it: each sample's C - 1 negatives in turn). ``space``: ``"h"`` or
    ``"e"``; ``lam``: that space's :math:`\lambda`.

    Returns ``{"soft": m (B,), "hard": S_own - max S_other (B,), "pos": S_own (B,)}`` (float64), or
    None when the space was not computed (its weight is 0).
    """
    if space not in _SPACE_NAMES:
        raise ValueError(f"space = {space!r}: choose 'h' or 'e'")
    lam = float(lam)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam = {lam!r}: lambda must be a finite number > 0")
    parts = _sim_parts(sim_event)
    pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
    if pos is None or neg is None or len(pos) == 0:
        return None
    pos = np.asarray(pos, dtype=np.float64).reshape(-1)
    neg = np.asarray(neg, dtype=np.float64)
    B = len(pos)
    if neg.size == 0 or neg.size % B:
        raise ValueError(f"{space}_neg has {neg.size} values: expected B (C - 1) for B = {B} samples (C >= 2 classes)")
    neg = neg.reshape(B, -1)
    top = neg.max(axis=1)
    lse = top + np.log(np.exp(lam * (neg - top[:, None])).sum(axis=1)) / lam  # (1/lam) logsumexp(lam S), stable
    return {"soft": pos - lse, "hard": pos - top, "pos": pos}


def _margin_summary(m: np.ndarray, delta: Optional[float]) -> str:
    if delta is None or not np.isfinite(delta):
        return f"{len(m)} samples"
    return f"m ≥ δ for {np.mean(m >= delta):.0%} of {len(m)} samples"


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
) -> go.Figure:
    """What Eq. 7 compares, sample by sample: the histogram of each sample's margin
    ``m = S_own - (1/lambda) log sum exp(lambda S_other)`` (filled; :func:`per_sample_margins`) and of
    the hard margin ``S_own - max S_other`` (outline), H and E side by side, with the margin
    ``delta`` of Eq. 7 dashed: a sample left of it (shaded) has a loss above ``log 2``, one right of it
    meets the margin. The panel titles give the fraction of samples with ``m >= delta``.

    ``sim_event`` as for :func:`similarity_histogram` (a space that was not computed is marked so);
    ``lambda_h`` / ``lambda_e``: the :math:`\\lambda` of each space (the log-sum-exp's sharpness).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("hyperbolic", "Euclidean"), horizontal_spacing=0.08)
    for col, (space, delta, lam) in enumerate((("h", delta_h, lambda_h), ("e", delta_e, lambda_e)), start=1):
        mm = per_sample_margins(sim_event, space, lam)
        if mm is None:
            dom = (fig.layout.xaxis if col == 1 else fig.layout.xaxis2).domain
            fig.add_annotation(text="not computed<br>(its weight η is 0,<br>or the loss has no proxies)",
                               xref="paper", yref="paper", x=(dom[0] + dom[1]) / 2, y=0.5, showarrow=False,
                               font=dict(color="gray"))
            fig.update_xaxes(showticklabels=False, row=1, col=col)
            fig.update_yaxes(showticklabels=False, row=1, col=col)
            continue
        has_delta = delta is not None and np.isfinite(delta)
        vals = np.r_[mm["soft"], mm["hard"], [float(delta)] if has_delta else []]
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.04 * max(hi - lo, 1e-3)  # so that a margin line at the edge of the data stays visible
        lo, hi = lo - pad, hi + pad
        edges = np.linspace(lo, hi, bins + 1)
        mid, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        soft, _ = np.histogram(mm["soft"], bins=edges)
        hard, _ = np.histogram(mm["hard"], bins=edges)
        show = col == 1
        fig.add_trace(go.Bar(x=mid, y=soft, width=width, marker_color=_MARGIN_COLOR, opacity=0.7, legendgroup="soft",
                             name="m = S_own − (1/λ) log Σ exp(λ S_other)", showlegend=show), row=1, col=col)
        fig.add_trace(go.Scatter(x=np.r_[edges[0], edges], y=np.r_[0, hard, 0], mode="lines", line_shape="hv",
                                 line=dict(color="black", width=1.5), legendgroup="hard",
                                 name="S_own − max S_other", showlegend=show), row=1, col=col)
        if has_delta:
            top = 1.05 * max(soft.max(), hard.max(), 1)
            fig.add_vrect(x0=lo, x1=float(delta), fillcolor="#bdbdbd", opacity=0.3, line_width=0, row=1, col=col)
            fig.add_trace(go.Scatter(x=[float(delta)] * 2, y=[0, top], mode="lines", line=dict(color="black", width=2, dash="dash"),
                                     name="margin δ (left of it: loss > log 2)", legendgroup="delta", showlegend=show,
                                     hovertemplate=f"δ_{space.upper()} = {float(delta):g}<extra></extra>"), row=1, col=col)
            fig.layout.annotations[col - 1].text += f" (δ_{space.upper()} = {float(delta):g})"
        fig.layout.annotations[col - 1].text += f"<br>{_margin_summary(mm['soft'], delta)}"  # two lines: panels side by side
    k = plotly_scale()  # > 1 under the lecture style: larger fonts need room
    fig.update_layout(barmode="overlay", uirevision=uirevision, height=_height(height), title=title,
                      font_size=plotly_font_size(12), margin=dict(l=int(40 * k), r=10, t=int((88 if title else 58) * k), b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.25 * k, x=0.5, xanchor="center",
                                  font=dict(size=plotly_font_size(12))))
    fig.update_xaxes(title_text="per-sample margin (higher = better separated)", title_font_size=plotly_font_size(12))
    if k > 1:  # the panel titles (make_subplots sets their size itself) projector-sized too
        fig.update_annotations(font_size=plotly_font_size(12))
    fig.update_yaxes(title_text="samples", col=1)
    return fig


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
    """Static (matplotlib) version of :func:`margin_histogram`. Font sizes follow matplotlib's
    settings, so :func:`chestlab.viz.style.use_lecture_style` makes it projector-sized."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (space, delta, lam) in zip(axes, (("h", delta_h, lambda_h), ("e", delta_e, lambda_e))):
        ax.spines[["top", "right"]].set_visible(False)
        name = _SPACE_NAMES[space]
        mm = per_sample_margins(sim_event, space, lam)
        if mm is None:
            ax.set_title(name)
            ax.text(0.5, 0.5, "not computed\n(its weight η is 0)", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        has_delta = delta is not None and np.isfinite(delta)
        vals = np.r_[mm["soft"], mm["hard"], [float(delta)] if has_delta else []]
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.04 * max(hi - lo, 1e-3)  # so that a margin line at the edge of the data stays visible
        lo, hi = lo - pad, hi + pad
        edges = np.linspace(lo, hi, bins + 1)
        ax.hist(mm["soft"], bins=edges, color=_MARGIN_COLOR, alpha=0.7, label=r"$m_i = S_{own} - \frac{1}{\lambda}\log\sum e^{\lambda S_{other}}$")
        ax.hist(mm["hard"], bins=edges, histtype="step", color="black", lw=1.5, label=r"$S_{own} - \max\, S_{other}$")
        if has_delta:
            ax.axvspan(lo, float(delta), color="#bdbdbd", alpha=0.35, lw=0, label=r"$m_i < \delta$: loss $> \log 2$")
            ax.axvline(float(delta), color="black", ls="--", lw=2, label=r"margin $\delta$")
            name += rf" ($\delta_{space.upper()}$ = {float(delta):g})"
        summary = _margin_summary(mm["soft"], delta).replace("m ≥ δ", r"$m_i \geq \delta$")
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
) -> go.Figure:
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
    c = float(c)
    lab, sup, palette = _disk_colors(labels, super_labels, proxies2d, proxy_labels, class_super, color_by)
    nodes = None if tree is None else np.concatenate([tree["nodes"], tree["root"][None]])
    fig = go.Figure()
    viz_plotly.add_disk(fig, c, grid=grid, circles=circles, avoid=_label_obstacles(x2d, proxies2d, nodes))  # first: points on top
    viz_plotly.add_embeddings(fig, x2d, lab, sup, class_names=class_names, super_names=super_names,
                              marker_size=marker_size, palette=palette, color_by=color_by)
    if tree is not None:
        viz_plotly.add_tree(fig, tree, super_names, class_names=class_names, palette=palette, part="lines",
                            show_children=proxies2d is None)
    if proxies2d is not None:
        viz_plotly.add_proxies(fig, proxies2d, proxy_labels, class_names=class_names, palette=palette)
    if tree is not None:
        viz_plotly.add_tree(fig, tree, super_names, part="nodes")
    return viz_plotly.style_disk(fig, geometry.view_limit(c, _label_obstacles(x2d, None, nodes)), title=title,
                                 uirevision=uirevision, height=height)


def _disk_colors(labels: Any, super_labels: Any, proxies2d: Any, proxy_labels: Any, class_super: Any,
                 color_by: str) -> tuple[np.ndarray, Optional[np.ndarray], list[str]]:
    """``(labels (N,), super_labels (N,) or None, the colour of every class)`` of a disk figure: the
    palette (:func:`chestlab.viz.style.disk_palette`) covers the proxies' classes too."""
    from .viz.style import disk_palette

    lab = _np(labels).astype(int).reshape(-1)
    sup = None if super_labels is None else _np(super_labels).astype(int).reshape(-1)
    cs = None if class_super is None else _np(class_super).astype(int).reshape(-1)
    pl = None if proxies2d is None else geometry.proxy_points(proxies2d, proxy_labels)[1]
    n = 0 if pl is None or not len(pl) else int(pl.max()) + 1
    return lab, sup, disk_palette(lab, sup, class_super=cs, color_by=color_by, n=n)


def _label_obstacles(*parts: Any) -> Optional[np.ndarray]:
    """The points, proxies and nodes of a disk figure, (N, 2): where its circle labels should not go."""
    arrays = [geometry.as_numpy(p).reshape(-1, 2) for p in parts if p is not None]
    return np.concatenate(arrays) if arrays else None


def poincare_disk_mpl(x2d: Any, labels: Any, super_labels: Any = None, proxies2d: Any = None, *, c: float = 1.0,
                      circles: Sequence[float] = (), title: Optional[str] = None,
                      figsize: Optional[tuple[float, float]] = None, proxy_labels: Any = None, color_by: str = "super",
                      class_super: Any = None, tree: Optional[dict] = None):
    """Static (matplotlib) version of :func:`poincare_disk` (the same colours, proxies and ``tree``), for
    PNG/PDF. Drawn by :mod:`chestlab.viz.mpl`; font sizes come from matplotlib's settings and
    ``figsize`` (default 4.5 x 4.5 in) grows to the settings' figure width
    (:func:`chestlab.viz.style.use_lecture_style`: projector-sized)."""
    from matplotlib.figure import Figure

    from .viz import mpl as viz_mpl
    from .viz.style import fit_figsize

    c = float(c)
    lab, sup, palette = _disk_colors(labels, super_labels, proxies2d, proxy_labels, class_super, color_by)
    nodes = None if tree is None else np.concatenate([tree["nodes"], tree["root"][None]])
    fig = Figure(figsize=figsize or fit_figsize((4.5, 4.5), keep_aspect=False), dpi=150, layout="constrained")
    ax = fig.subplots()
    viz_mpl.draw_disk(ax, c, circles=circles, avoid=_label_obstacles(x2d, proxies2d, nodes))
    viz_mpl.scatter_embeddings(ax, x2d, lab, sup, palette=palette, color_by=color_by)
    if proxies2d is not None:
        viz_mpl.scatter_proxies(ax, proxies2d, proxy_labels, palette=palette)
    if tree is not None:
        viz_mpl.draw_tree(ax, tree)
    viz_mpl.style_disk(ax, geometry.view_limit(c, _label_obstacles(x2d, None, nodes)), title=title)
    return fig


#: the level strip's lines, coarse to fine: (level of disk_tree_geometry's "depth", colour, dash,
#: marker); greys, darker for coarser levels (red, blue and the super-class colours mean other things)
_LEVEL_STYLE = (("root", "#111111", "dot", "square"), ("super-classes", "#3d3d3d", "solid", "diamond"),
                ("classes", "#7a7a7a", "solid", "star"), ("samples", "#b0b0b0", "solid", "circle"))


def level_strip(history: Sequence[tuple[int, Mapping[str, float]]], *, classes_are: str = "proxies",
                uirevision: str = "levels", height: int = 190, max_points: int = 400) -> go.Figure:
    r"""A small chart of how far from the origin each level of the hierarchy sits, over training: the
    mean :math:`d_H(0, \cdot)` of the root, the super-class nodes, the classes (their proxies, or
    their means: ``classes_are``) and the samples, one line each, from ``history`` = ``[(step,
    {level: value}), ...]`` (:func:`chestlab.viz.hierarchy.disk_tree_geometry`'s ``"depth"`` per
    step). "Coarse near the origin, fine near the boundary" reads as the lines' order, bottom to top."""
    rows = [{"step": st, **dep} for st, dep in history]
    traces = []  # one figure from dicts: validated once (the strip is redrawn with the disk)
    for level, color, dash, symbol in _LEVEL_STYLE:
        xs, ys = _series(rows, level, max_points)
        if xs:
            name = f"classes ({classes_are})" if level == "classes" else level
            traces.append(dict(type="scatter", x=xs, y=ys, mode="lines+markers" if len(xs) < 40 else "lines", name=name,
                               line=dict(color=color, width=2, dash=dash), marker=dict(symbol=symbol, size=6),
                               hovertemplate=f"{name}: %{{y:.2f}} at step %{{x}}<extra></extra>"))
    k = plotly_scale()
    axis = dict(gridcolor=COLORS["grid"], zeroline=False)
    return go.Figure(data=traces, layout=dict(
        uirevision=uirevision, height=_height(height), font=dict(size=plotly_font_size(11)), plot_bgcolor="white",
        margin=dict(l=int(50 * k), r=10, t=int(24 * k), b=int(36 * k)),
        title=dict(text="mean d<sub>H</sub>(0, ·) per level", font=dict(size=plotly_font_size(12)), x=0.0, xanchor="left",
                   y=0.98, yanchor="top"),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom", font=dict(size=plotly_font_size(10))),
        xaxis=dict(axis, title=dict(text="step", standoff=2)),
        yaxis=dict(axis, title=dict(text="d<sub>H</sub>(0, ·)"), rangemode="tozero")))


# ------------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------------
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
    xs, ys = _series(rows, "loss", max_points)
    if xs:
        out.append(dict(key="loss", name=_TOTALS.get(loss or "", "total L (Eq. 10)" if loss is None else "total L"),
                        color="black", x=xs, y=ys, small=False))
    grey = iter(("#555555", "#8c8c8c", "#2f2f2f"))
    for key in keys:
        xs, ys = _series(rows, key, max_points)
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


def _series(rows: Sequence[Mapping], key: str, max_points: int) -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None and np.isfinite(r[key])]
    if len(pts) > max_points:  # keep the page light: thin long runs evenly, always keep the last point
        idx = np.unique(np.r_[np.linspace(0, len(pts) - 1, max_points).astype(int), len(pts) - 1])
        pts = [pts[i] for i in idx]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(history_rows: Iterable[Mapping], *, uirevision: str = "curves", height: int = 360,
                    max_points: int = 400, title: Optional[str] = None, loss: Optional[str] = None) -> go.Figure:
    """Loss components (left) and Recall@1 / MAP@R (middle / right) over steps.

    ``history_rows``: dicts with ``step`` and the loss ``loss`` and its parts (``l_h``, ``l_e``,
    ``l_hyphc``, ``l_hier``, ...: step rows) or metric keys ``{split}/{space}/{metric}``, e.g.
    ``test/H/R@1`` (``Trainer.history`` rows); ``loss``: the loss's registered name, which names the
    total and picks its parts (:func:`loss_terms`). The regularisers of :data:`SMALL_TERMS` are drawn
    on their own log axis right of the loss panel, so that a term 1e-4 of the total is seen moving.
    Test = unseen classes (solid), train classes dashed; H green, E orange."""
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
    fig.update_layout(uirevision=uirevision, height=_height(height), title=title, font_size=plotly_font_size(12),
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

    from .viz.style import fit_figsize

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
        for split, ls in (("test", "-"), ("train", "--")):
            for space in ("H", "E"):
                xs, ys = _series(rows, f"{split}/{space}/{metric}", 2000)
                if xs:
                    ax.plot(xs, ys, ls=ls, color=COLORS[space], marker="o", ms=3,
                            label=f"{space} {'unseen (test)' if split == 'test' else 'train'} classes")
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
    k = plotly_scale()
    fig.update_layout(uirevision=uirevision, height=_height(height), font_size=plotly_font_size(12),
                      margin=dict(l=int(40 * k), r=10, t=int(30 * k), b=int(40 * k)),
                      xaxis_title="negatives sorted by distance to the anchor (1 = hardest)",
                      yaxis=dict(title="weight w_ik (log scale)", type="log", exponentformat="power"),
                      legend=dict(font=dict(size=plotly_font_size(10)), x=0.98, xanchor="right", y=0.98))
    return fig


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------
def to_png(fig: Any, dpi: int = 150) -> bytes:
    """PNG bytes of a matplotlib figure (plotly PNG export would need kaleido and a browser)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
