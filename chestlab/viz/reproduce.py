"""Figures of the hierarchy experiments of :mod:`chestlab.reproduce` (matplotlib, the lessons'
projector style). The paper's own figures (Figs. 2-3, the hard-negative paper's, Tables 6-7 as bars)
are in :mod:`chestlab.viz.paper`.

* :func:`dims_figure` -- ``reproduce dims``: each metric over the embedding dimension, the ball
  (H only) against the plane (E only), one row of panels per dataset.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .style import COLORS, LECTURE_RC

__all__ = ["dims_figure"]


def dims_figure(summary: Sequence[dict], metrics: Sequence[str]):
    """``reproduce dims``'s figure from its summary rows (:func:`chestlab.reproduce.hierarchy.summary_table`
    over ``("dataset", "D", "space")``: ``dataset``, ``D``, ``space`` and per metric ``m`` its mean
    ``m`` and ``"m std"``): a panel per dataset and metric, the mean ± std over seeds against ``D``
    (log axis, ticks at the dimensions run), H blue (ball) and E orange (plane)."""
    import matplotlib
    from matplotlib.figure import Figure

    dims = sorted({s["D"] for s in summary})
    with matplotlib.rc_context(LECTURE_RC):
        datasets = list(dict.fromkeys(s["dataset"] for s in summary))
        fig = Figure(figsize=(5 * len(metrics), 3.8 * len(datasets)), layout="constrained")
        axs = fig.subplots(len(datasets), len(metrics), squeeze=False)
        for i, ds in enumerate(datasets):
            for j, m in enumerate(metrics):
                ax = axs[i, j]
                for space in ("H", "E"):
                    pts = sorted((s["D"], s[m], s[f"{m} std"]) for s in summary if s["dataset"] == ds and s["space"] == space)
                    x, y, e = (np.array(v, dtype=float) for v in zip(*pts))
                    ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3, color=COLORS[space],
                                label="ball (H only, $d_H$)" if space == "H" else "plane (E only, $d_E$)")
                ax.set(xscale="log", xlabel="embedding dimension D", ylabel=m, title=f"{ds}: {m}")
                ax.set_xticks(dims, labels=[str(d) for d in dims])
                ax.minorticks_off()  # the log axis's minor labels ("3×10⁰ …") overlapped the dimensions
        axs[0, 0].legend()
    return fig
