"""Static, paper-style (matplotlib) figures of the reproduction scripts (:mod:`chestlab.reproduce`)
and the lessons' retrieval strip.

* :func:`similarity_histograms` -- the CHEST paper's Fig. 3: ``S_H(x_i, y)`` of a batch to its own
  class vs the other classes, one panel per run (without ``L_E`` | with ``L_E``), shared bins.
* :func:`disk_with_queries` / :func:`retrieval_grid` -- the CHEST paper's Fig. 2: embeddings in the
  Poincaré disk (drawn by :func:`chestlab.viz.disk.poincare_disk_mpl`) with the retrieval queries
  circled in red, and query + 19 results per example with wrong results framed in red;
  :func:`retrieval_figure` -- retrieval examples for a projector (notebook 06).
* :func:`hardneg_recall_over_t` -- the hard-negative paper's Fig. 2: Recall@1 over the temperature
  ``t``, sphere vs hyperbolic at several curvatures ``c``.
* :func:`hardneg_weights` -- the hard-negative paper's Fig. 3: the weights ``w_ik`` over the sorted
  negatives (:func:`chestlab.viz.hardneg.weight_curves`, as the dashboard's plotly version).
* :func:`ablation_bars` -- Tables 6-7 as a bar chart, ours (mean ± std) beside the paper's R@1.

Every builder returns a :class:`matplotlib.figure.Figure` built without pyplot (no global backend),
saved with :func:`save`. Interactive (plotly) versions for the dashboard live beside them in
:mod:`chestlab.viz` (:mod:`~chestlab.viz.similarity`, :mod:`~chestlab.viz.disk`,
:mod:`~chestlab.viz.hardneg`); what they share is called, not rewritten.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .disk import poincare_disk_mpl
from .hardneg import weight_curves
from .style import COLORS

__all__ = [
    "PAPER_POS",
    "PAPER_NEG",
    "save",
    "similarity_histograms",
    "disk_with_queries",
    "retrieval_grid",
    "retrieval_figure",
    "hardneg_recall_over_t",
    "hardneg_weights",
    "ablation_bars",
]

# Fig. 3 of the CHEST paper: "The blue area represents the similarities to negative classes, and the
# red area represents the similarities to positive class" (the dashboard's colours are the reverse).
PAPER_POS = COLORS["pos"]  # the paper's Fig. 3: positive class red
PAPER_NEG = COLORS["neg"]  # negatives blue


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure  # no pyplot: safe in threads and headless runs

    return Figure(figsize=figsize, dpi=150, layout="constrained")


def save(fig: Any, stem: Union[str, Path], formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.png``, ``stem.pdf``, ... (folders created); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, format=fmt, dpi=150 if fmt == "png" else None)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# CHEST paper, Fig. 3
# ------------------------------------------------------------------------------------------------
def similarity_histograms(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], *, bins: int = 50,
                          xlabel: str = r"$S_H(x_i, y)$", figsize: Optional[tuple[float, float]] = None):
    """One histogram panel per ``(title, positive, negative)``: a batch's similarities to its own class
    (red) and to every other class (blue), densities, on bins shared by all panels so the runs compare.

    :func:`chestlab.viz.similarity.similarity_histogram_mpl` shows one run's H and E side by side; Fig. 3
    compares *two runs'* ``S_H``, hence this layout."""
    if not panels:
        raise ValueError("similarity_histograms needs at least one (title, positive, negative) panel")
    allv = np.concatenate([np.concatenate([np.ravel(p), np.ravel(n)]) for _, p, n in panels])
    edges = np.linspace(float(allv.min()), float(allv.max()) + 1e-9, bins + 1)
    fig = _figure(figsize or (3.4 * len(panels), 2.7))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True))
    for ax, (title, pos, neg) in zip(axes, panels):
        ax.hist(np.ravel(neg), bins=edges, density=True, color=PAPER_NEG, alpha=0.6, label="negative classes")
        ax.hist(np.ravel(pos), bins=edges, density=True, color=PAPER_POS, alpha=0.6, label="positive class")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("density")
    axes[0].legend(frameon=False, fontsize=7)
    return fig


# ------------------------------------------------------------------------------------------------
# CHEST paper, Fig. 2
# ------------------------------------------------------------------------------------------------
def disk_with_queries(x2d: Any, labels: Any, super_labels: Any = None, *, c: float, query_index: Sequence[int] = (),
                      title: Optional[str] = None):
    """The Poincaré disk of :func:`chestlab.viz.disk.poincare_disk_mpl` with the retrieval queries
    circled in red, as in Fig. 2."""
    fig = poincare_disk_mpl(x2d, labels, super_labels, c=c, title=title)
    if len(query_index):
        q = np.asarray(x2d)[np.asarray(query_index, dtype=int)]
        ax = fig.axes[0]
        ax.scatter(q[:, 0], q[:, 1], s=140, facecolors="none", edgecolors="red", linewidths=1.5, zorder=5)
        for k, (x, y) in enumerate(q):
            ax.annotate(f"q{k + 1}", (x, y), xytext=(5, 5), textcoords="offset points", color="red", fontsize=7)
    return fig


def retrieval_grid(examples: Sequence[Mapping[str, Any]], *, per_row: int = 10, tile: float = 0.62):
    """Retrieval examples as in Fig. 2: per example, the query (top left, black frame) then its results
    in order of similarity, left to right and top to bottom, ``per_row`` tiles a row (the paper: one
    query and 19 results in two rows of 10); wrong-class results framed in red.

    ``examples``: mappings with ``"query"`` (a tile) and ``"results"`` (a list of ``(tile, correct)``).
    A tile is an image array ``(H, W)`` / ``(H, W, 3)`` in [0, 1], or a string (drawn as text: data
    without pixels, such as the ``tree`` vectors)."""
    if not examples:
        raise ValueError("retrieval_grid needs at least one example")
    rows_per = [math.ceil((1 + len(e["results"])) / per_row) for e in examples]
    n_rows = sum(rows_per) + len(examples) - 1  # a thin blank spacer row between examples
    heights = []
    for i, nr in enumerate(rows_per):
        heights += [1.0] * nr + ([0.25] if i < len(rows_per) - 1 else [])
    fig = _figure((per_row * tile, sum(heights) * tile))
    axes = np.atleast_2d(fig.subplots(n_rows, per_row, gridspec_kw={"height_ratios": heights}))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    r0 = 0
    for e, nr in zip(examples, rows_per):
        tiles = [(e["query"], None)] + list(e["results"])
        for i, (img, correct) in enumerate(tiles):
            ax = axes[r0 + i // per_row, i % per_row]
            _draw_tile(ax, img)
            color = "black" if correct is None else ("#bbbbbb" if correct else "red")
            ax.set_frame_on(True)
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(2.5 if correct is False else (1.5 if correct is None else 0.8))
        r0 += nr + 1
    return fig


def _draw_tile(ax: Any, img: Any) -> None:
    if isinstance(img, str):
        ax.text(0.5, 0.5, img, ha="center", va="center", fontsize=5, wrap=True, transform=ax.transAxes)
        return
    a = np.asarray(img)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")


def retrieval_figure(examples: Sequence[dict], *, tile: float = 1.15, class_names: Optional[Sequence[str]] = None,
                     title: Optional[str] = None):
    """Retrieval examples (:func:`chestlab.lessons.retrieval_examples`) for a projector: one row per query, the query
    on the left -- labelled "query", its class below, a thick amber frame, set apart by a gap -- then
    its results nearest first, numbered 1, 2, ... above; a result of another class is framed in red
    with its class below, one of the query's class has a thin grey frame. Returns a matplotlib Figure
    (no pyplot). ``class_names[label]`` names the classes (default: the label number)."""
    from matplotlib.figure import Figure

    if not examples:
        raise ValueError("retrieval_figure needs at least one example")
    n = max(len(e["results"]) for e in examples)

    def name(y: int) -> str:
        return str(class_names[y]) if class_names is not None else str(y)

    fig = Figure(figsize=(tile * (n + 1.6), tile * 1.55 * len(examples) + (0.5 if title else 0.1)), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(examples), n + 2, gridspec_kw={"width_ratios": [1.0, 0.35] + [1.0] * n}))
    for row, e in zip(axes, examples):
        row[1].set_axis_off()  # the gap between the query and its results
        tiles = [(e["query"], None, e.get("query_label"))] + [(img, ok, lab) for (img, ok), lab in
                                                                zip(e["results"], e.get("labels", [None] * len(e["results"])))]
        for k, (ax, (img, ok, lab)) in enumerate(zip([row[0]] + list(row[2:]), tiles)):
            if isinstance(img, str):
                ax.text(0.5, 0.5, img, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)
            else:
                a = np.asarray(img)
                ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            color, lw = ("#f2b701", 6.0) if ok is None else (("#bbbbbb", 1.0) if ok else ("#d62728", 4.0))
            for sp in ax.spines.values():
                sp.set_visible(True)
                sp.set_edgecolor(color)
                sp.set_linewidth(lw)
            if ok is None:
                ax.set_title("query", fontsize=15, fontweight="bold")
            else:
                ax.set_title(str(k), fontsize=13, color="#555555")
            if lab is not None and ok is not True:  # the query's class, and the class of every wrong result
                ax.set_xlabel(name(lab), fontsize=13, color="black" if ok is None else "#d62728")
        for ax in row[len(tiles) + 1:]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------------------
# hard-negative paper, Figs. 2 and 3
# ------------------------------------------------------------------------------------------------
_SHADES = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#6a51a3", "#3f007d")


def hardneg_recall_over_t(curves: Mapping[str, Sequence[tuple[float, float, float]]], *, title: Optional[str] = None):
    """Recall@1 over the temperature ``t`` (log axis): ``curves`` maps a geometry label ("sphere",
    "hyperbolic c = 0.1", ...) to ``(t, mean R@1, std R@1)`` points. The sphere is drawn black and
    dashed, the hyperbolic curves in blues (darker = larger ``c``)."""
    fig = _figure((4.6, 3.0))
    ax = fig.subplots()
    hyp = 0
    for label, pts in curves.items():
        pts = sorted(pts)
        t = np.array([p[0] for p in pts])
        m = 100 * np.array([p[1] for p in pts])
        s = 100 * np.nan_to_num(np.array([p[2] for p in pts]))
        if label.startswith("sphere"):
            style = dict(color="black", ls="--", marker="s")
        else:
            style = dict(color=_SHADES[hyp % len(_SHADES)], ls="-", marker="o")
            hyp += 1
        ax.plot(t, m, label=label, ms=3, lw=1.2, **style)
        if s.any():
            ax.fill_between(t, m - s, m + s, color=style["color"], alpha=0.12, lw=0)
    ax.set_xscale("log")
    ts = sorted({p[0] for pts in curves.values() for p in pts})
    ax.set_xticks(ts, [f"{t:g}" for t in ts])  # the swept values, not log-axis minor labels
    ax.minorticks_off()
    ax.set_xlabel("temperature t")
    ax.set_ylabel("Recall@1 (%)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def hardneg_weights(v: Any, *, t_sphere: float, t: float, c_values: Sequence[float], labels: Any = None,
                    anchor: int = 0, title: Optional[str] = None):
    """Weights ``w_ik`` of the pairwise cross-entropy's gradient over one anchor's negatives sorted by
    distance (1 = hardest), sphere (temperature ``t_sphere``) vs the Poincaré ball at each ``c``
    (temperature ``t``), from the same tangent features ``v`` (N, D), so only the geometry changes."""
    fig = _figure((4.6, 3.0))
    ax = fig.subplots()
    curves = weight_curves(v, t_sphere=t_sphere, t=t, c_values=c_values, labels=labels, anchor=anchor)
    for i, cur in enumerate(curves):
        w = cur["w"]
        if cur["c"] is None:
            ax.plot(cur["x"], w, color="black", ls="--", marker="s", ms=2.5, lw=1.2,
                    label=f"sphere, t = {cur['t']:g} (max w = {w.max():.2f})")
        else:
            ax.plot(cur["x"], w, color=_SHADES[(i - 1) % len(_SHADES)], marker="o", ms=2.5, lw=1.2,
                    label=f"hyperbolic c = {cur['c']:g}, t = {cur['t']:g} (max w = {w.max():.2f})")
    ax.axhline(1.0 / max(len(curves[-1]["w"]), 1), color="gray", ls=":", lw=0.8, label="uniform 1/N")
    ax.set_yscale("log")
    ax.set_xlabel("negatives sorted by distance to the anchor (1 = hardest)")
    ax.set_ylabel(r"weight $w_{ik}$")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------------
# Tables 6-7 as bars
# ------------------------------------------------------------------------------------------------
def ablation_bars(rows: Sequence[Mapping[str, Any]], *, title: Optional[str] = None, metric: str = "R@1"):
    """Horizontal bars of ``rows`` (dicts with ``name``, ``space``, ``mean``, ``std``, ``n`` and
    optionally ``paper``, all R@1 fractions), top to bottom in the table's order; colour = evaluated
    space (H blue, E orange); the paper's value as a black diamond where known."""
    fig = _figure((6.0, 0.32 * len(rows) + 1.1))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    means = np.array([100 * r["mean"] if r.get("n") else np.nan for r in rows])
    stds = np.array([100 * r["std"] if r.get("n", 0) > 1 and np.isfinite(r["std"]) else 0.0 for r in rows])
    colors = [COLORS.get(r["space"], "gray") for r in rows]
    ax.barh(y, np.nan_to_num(means), xerr=stds, color=colors, alpha=0.85, height=0.7,
            error_kw=dict(ecolor="black", elinewidth=0.8, capsize=2))
    paper = np.array([100 * r["paper"] if r.get("paper") is not None else np.nan for r in rows])
    if np.isfinite(paper).any():
        ax.scatter(paper, y, marker="D", color="black", s=14, zorder=3, label="paper")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
    vals = np.concatenate([means[np.isfinite(means)], paper[np.isfinite(paper)]])
    left = 0.0
    if vals.size:  # zoom on the differences, as the tables' few points matter
        lo, hi = float(vals.min()), float(vals.max())
        left = max(0.0, lo - 0.25 * (hi - lo) - 3)
        ax.set_xlim(left, min(100.0, hi + 0.15 * (hi - lo) + 3))
    for yi, m in zip(y, means):  # the value inside the bar's visible start, clear of the error bar
        if np.isfinite(m):
            ax.text(left, yi, f" {m:.1f}", va="center", ha="left", fontsize=6, color="white")
    ax.set_xlabel(f"{metric} (%), mean ± std over seeds" + (" (axis cut)" if left > 0 else ""))
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
