"""The hard-negative figure on a projector (issue 19): at t = 0.01 the weights span 1e-290..1, yet
the y axis stays bounded with readable ticks, and the legend sits under the plot, clear of the
"uniform 1/N" label, which sits on its line (not at the top of the plot)."""

from __future__ import annotations

import math

import torch

from chestlab.viz import hardneg


def test_a_small_temperature_keeps_the_axis_bounded_and_the_legend_clear() -> None:
    v = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    curves = hardneg.weight_curves(v, t_sphere=0.01, t=0.01, c_values=[1.0])
    assert min(float(c["w"].min()) for c in curves) < 1e-30  # the data do reach far below the floor
    fig = hardneg.weights_figure([1.0], 0.01, v=v)
    lo, hi = fig.layout.yaxis.range
    assert lo == math.log10(hardneg.W_FLOOR) and -9 <= lo and 0 <= hi <= 0.1
    assert (hi - lo) / fig.layout.yaxis.dtick <= 6  # at most a handful of ticks: 10^-8 … 1
    legend = fig.layout.legend
    assert legend.orientation == "h" and legend.y < 0 and legend.yanchor == "top"  # under the plot area
    label = next(a for a in fig.layout.annotations if a.text == "uniform 1/N")
    # on the line: a log axis places annotations by log10 of the value (N negatives: 1/63 -> -1.80), inside the range
    n = len(curves[-1]["w"])
    assert label.yref == "y" and label.yanchor == "bottom" and abs(label.y - math.log10(1 / n)) < 1e-12 and lo < label.y < hi
